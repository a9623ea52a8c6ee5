"""Every shell command README.md and docs/*.md show runs as written, in order (like doctest).

The rules a document follows, so that this test can run it:

- **What runs.** Every command in a fenced block whose language is ``sh``, ``bash`` or
  ``shell``; in a ``console`` block, the lines after a ``$ `` prompt (continued by ``> ``),
  whose output lines are shown, not compared. Comment-only lines are skipped; a command may
  span lines (``\\`` at the end, or a ``for ...; do`` block). Blocks in any other language
  (``ini``, ``text``, none) are not run: write a file's contents as ``ini``/``text`` and the
  command that writes it (``cat > FILE <<'EOF'``) as ``sh`` if the reader needs the file.
  Inline `code` in prose is not run: anything a reader should type belongs in a block.
- **Where.** Each document runs alone, from its first command to its last, in one bash shell
  (variables, ``cd`` and ``export`` carry over) whose working directory is a fresh copy of the
  repository, as a fresh ``git clone`` has it (it is itself a git repository). The copy's
  ``.venv`` is the virtual environment ``make`` built for this test run, so a document gets
  ``t10k`` the way README.md says: ``. .venv/bin/activate``. Each document must say so itself.
- **A machine of its own.** (Needs root: CI is root; elsewhere the test skips.) Each
  document runs in private network, mount and PID namespaces: a loopback and an ``eth0`` (as
  a lab VM has), /etc, /opt, /var and /run copy-on-write (``ip netns`` names included), so
  the documented fixed addresses (127.0.0.21, 198.18.1.21 ...) and paths (/etc/t10k,
  /var/lib/t10k, /opt/t10k-lab) work as written, whatever else runs on the host, and nothing
  a document writes there stays.
- **Commands for another machine** (a lab VM's ``ip addr add ... dev eth0``, ``systemctl``)
  run on the same private machine: systemd is replaced by ``systemctl_standin.py``, which
  starts the units the document installed the way systemd would (EnvironmentFile,
  LoadCredential, ExecStart); ``systemd-analyze verify`` (real) checks the unit files.
  So docs/LAB-VMS.md is run end to end, KMS host, token bay and library on one machine.
- **make.** ``make`` never builds a venv here (the suite's own is linked as ``.venv``) and
  ``make test`` is only checked to exist (``make -n test``): the suite never runs itself.
  ``make demo`` and other targets run.
- **Background commands** (ending in ``&``) must print a line saying they are up
  (``serving``, ``running``, ``listening`` or ``ready``) within 30 s, as a reader waits for a
  daemon before the next command. Their PIDs are tracked and stopped (SIGTERM, then the PID
  namespace ends) when the document ends.
- **Slow blocks.** A block whose info string is ``sh slow`` (benchmarks: minutes of CPU) is
  checked, not run: each of its commands runs with ``T10K_DOC_ARGS_ONLY=1``, under which any
  Python program parses its arguments with argparse and exits (``argsonly/sitecustomize.py``),
  so a renamed flag or script still fails. Nothing else may be marked slow.
- **Placeholders** a reader replaces are written ``<like this>``; only ``<this repository>``
  exists (the test's copy). Any other fails, as would ``[--optional]`` syntax in a command.
- **Time.** Each command has 180 s, a document 900 s. A failure names the document, the
  line, the command, its exit status and output, and the output of the daemons running.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.doc_commands import ROOT, Command, DocRun, DocumentError, extract, run_document
from tests.integration.root import needs_root

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.fixture(scope="module")
def doc_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Path, Future[DocRun]]]:
    """Every document started at once, two at a time (each is its own machine), longest first."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield {doc: pool.submit(run_document, doc, tmp_path_factory.mktemp(doc.stem)) for doc in DOCUMENTS}


@pytest.mark.network
@needs_root
@pytest.mark.timeout(1000)
@pytest.mark.parametrize("doc", DOCUMENTS, ids=[d.name for d in DOCUMENTS])
def test_the_document_runs_as_written(doc: Path, doc_runs: dict[Path, Future[DocRun]]) -> None:
    run = doc_runs[doc].result()
    if run.failed is not None:
        pytest.fail(run.report(), pytrace=False)


def test_every_document_with_commands_shows_how_it_gets_t10k() -> None:
    for doc in DOCUMENTS:
        commands = extract(doc)
        uses = [c for c in commands if c.text.lstrip().startswith("t10k ")]
        gets = [c for c in commands if ".venv/bin/activate" in c.text or "export PATH=" in c.text]
        assert not uses or (gets and gets[0].line < uses[0].line), \
            f"{doc.name}: t10k is used at line {uses[0].line} before any '. .venv/bin/activate' (or PATH) step"


SAMPLE = """\
# Title
```sh
. .venv/bin/activate   # the venv
# a comment line
t10k a --b \\
    --c
for i in 1 2; do
  echo $i
done
t10k token run --ip 127.0.0.21 &   # background
```
```sh slow
bench/x.py --n 1
```
```ini
NOT=run
```
```console
$ echo hi
hi
$ printf '%s\\n' a \\
> b
```
"""


def test_extraction_follows_the_rules(tmp_path: Path) -> None:
    doc = tmp_path / "sample.md"
    doc.write_text(SAMPLE)
    commands = extract(doc, name="sample.md")
    assert [(c.line, c.text) for c in commands] == [
        (3, ". .venv/bin/activate   # the venv"),
        (5, "t10k a --b \\\n    --c"),
        (7, "for i in 1 2; do\n  echo $i\ndone"),
        (10, "t10k token run --ip 127.0.0.21 &   # background"),
        (13, "bench/x.py --n 1"),
        (19, "echo hi"),
        (21, "printf '%s\\n' a \\\nb"),
    ]
    assert [c.background for c in commands] == [False, False, False, True, False, False, False]
    assert [c.slow for c in commands] == [False, False, False, False, True, False, False]
    assert not Command("x", 1, "a && b").background and not Command("x", 1, "a >&2").background


def test_unknown_placeholders_and_open_commands_are_refused(tmp_path: Path) -> None:
    doc = tmp_path / "bad.md"
    doc.write_text("```sh\nt10k vop status <drive ip>\n```\n")
    with pytest.raises(DocumentError, match=r"bad.md:2: unknown placeholder <drive ip>"):
        extract(doc, name="bad.md")
    doc.write_text("```sh\nfor i in 1 2; do\n```\n")
    with pytest.raises(DocumentError, match=r"bad.md:2: the block ends inside a command"):
        extract(doc, name="bad.md")


def test_a_here_document_is_one_command(tmp_path: Path) -> None:
    doc = tmp_path / "heredoc.md"
    doc.write_text("```sh\ncat > f.env <<'EOF'\nA=1\nEOF\necho next\n```\n")
    assert [(c.line, c.text) for c in extract(doc, name="heredoc.md")] == [
        (2, "cat > f.env <<'EOF'\nA=1\nEOF"), (5, "echo next")]
