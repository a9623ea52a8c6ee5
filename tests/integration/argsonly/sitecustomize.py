"""For the doc test's ```sh slow blocks: with T10K_DOC_ARGS_ONLY=1 a Python program parses its
arguments (argparse, so an unknown or renamed flag still fails) and exits 0 without running."""

import argparse
import os
import sys

if os.environ.get("T10K_DOC_ARGS_ONLY") == "1":
    _parse = argparse.ArgumentParser.parse_args

    def _parse_then_exit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = _parse(self, *args, **kwargs)
        print(f"{self.prog}: arguments accepted (T10K_DOC_ARGS_ONLY: not run)")
        sys.exit(0)
        return result

    argparse.ArgumentParser.parse_args = _parse_then_exit  # type: ignore[method-assign]
