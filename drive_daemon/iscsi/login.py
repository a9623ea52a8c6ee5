"""The target's side of the login phase (RFC 7143 section 6.3): names, CHAP, operational keys.

:class:`TargetLogin` takes Login Requests and returns Login Responses; when it answers
with the transit to full feature phase, :attr:`done` holds the session's parameters.
A refusal is a Login Response with a non-zero status: the connection then closes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from protocol.iscsi import (
    IscsiDecodeError,
    LoginRequest,
    LoginResponse,
    LoginStatus,
    SessionParams,
    Stage,
    check_response,
    chap_response,
    decode_binary,
    decode_text,
    encode_binary,
    encode_text,
    respond,
)
from protocol.iscsi.chap import CHALLENGE_SIZE, CHAP_MD5
from protocol.iscsi.constants import ISCSI_VERSION

from .config import IscsiConfig


class LoginRefused(Exception):
    def __init__(self, status: LoginStatus, detail: str) -> None:
        super().__init__(f"{status.name.lower()}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class LoginDone:
    params: SessionParams
    initiator_name: str
    isid: bytes
    tsih: int
    discovery: bool
    initial_cmdsn: int


class TargetLogin:
    def __init__(self, config: IscsiConfig, *, tsih: int, statsn: int) -> None:
        self.config = config
        self.tsih = tsih
        self.statsn = statsn
        self.first: LoginRequest | None = None
        self.initiator_name = ""
        self.discovery = False
        self.authenticated = config.chap is None
        self._chap_step = "method"
        self._challenge = (0, b"")
        self._agreed: dict[str, str] = {}
        self._declared = False
        self._tpgt_sent = False
        self.done: LoginDone | None = None
        #: why the last login failed, for counters and logs
        self.failure: LoginRefused | None = None

    def receive(self, pdu: LoginRequest) -> LoginResponse:
        """The answer to one Login Request (a refusal sets :attr:`failure`)."""
        try:
            keys, transit, nsg = self._step(pdu)
        except LoginRefused as exc:
            self.failure = exc
            return self._response(pdu, [], transit=False, nsg=0, status=exc.status)
        except IscsiDecodeError as exc:
            self.failure = LoginRefused(LoginStatus.INITIATOR_ERROR, str(exc))
            return self._response(pdu, [], transit=False, nsg=0, status=LoginStatus.INITIATOR_ERROR)
        response = self._response(pdu, keys, transit=transit, nsg=nsg)
        if transit and nsg == Stage.FULL_FEATURE:
            agreed = dict(self._agreed)
            agreed["target.MaxRecvDataSegmentLength"] = str(self.config.max_recv_data_segment)
            assert self.first is not None
            self.done = LoginDone(SessionParams.from_agreed(agreed), self.initiator_name, self.first.isid, self.tsih,
                                  self.discovery, self.first.cmdsn)
        return response

    def _response(self, pdu: LoginRequest, keys: list[tuple[str, str]], *, transit: bool, nsg: int,
                  status: LoginStatus = LoginStatus.SUCCESS) -> LoginResponse:
        cmdsn = pdu.cmdsn
        response = LoginResponse(transit=transit, csg=pdu.csg, nsg=nsg if transit else 0, version_max=ISCSI_VERSION,
                                 version_active=ISCSI_VERSION, isid=pdu.isid,
                                 tsih=self.tsih if transit and nsg == Stage.FULL_FEATURE else 0, itt=pdu.itt,
                                 statsn=self.statsn, expcmdsn=cmdsn,
                                 maxcmdsn=(cmdsn + self.config.queue_depth - 1) & 0xFFFFFFFF,
                                 status_class=status >> 8, status_detail=status & 0xFF, data=encode_text(keys))
        self.statsn = (self.statsn + 1) & 0xFFFFFFFF
        return response

    def _step(self, pdu: LoginRequest) -> tuple[list[tuple[str, str]], bool, int]:
        if pdu.version_min > ISCSI_VERSION:
            raise LoginRefused(LoginStatus.UNSUPPORTED_VERSION, f"version {pdu.version_min} > {ISCSI_VERSION}")
        pairs = decode_text(pdu.data)
        values = dict(pairs)
        answers: list[tuple[str, str]] = []
        if self.first is None:
            self.first = pdu
            self._names(values)
        elif pdu.isid != self.first.isid or pdu.itt != self.first.itt:
            raise LoginRefused(LoginStatus.INITIATOR_ERROR, "ISID or ITT changed during login")
        if pdu.tsih:
            raise LoginRefused(LoginStatus.SESSION_DOES_NOT_EXIST, "adding a connection to a session is not supported")
        if not self._tpgt_sent and not self.discovery:
            answers.append(("TargetPortalGroupTag", str(self.config.portal_group_tag)))
            if self.config.alias:
                answers.append(("TargetAlias", self.config.alias))
            self._tpgt_sent = True
        if pdu.csg == Stage.SECURITY:
            answers += self._security(values, pdu.transit)
        elif pdu.csg == Stage.OPERATIONAL:
            if not self.authenticated:
                raise LoginRefused(LoginStatus.AUTHENTICATION_FAILURE, "the target requires CHAP")
            ours = self.config.target_keys()
            found, agreed = respond(pairs, ours)
            self._agreed.update(agreed)
            answers += found
            if not self._declared:
                answers = [a for a in answers if a[0] != "MaxRecvDataSegmentLength"]
                answers.append(("MaxRecvDataSegmentLength", ours["MaxRecvDataSegmentLength"]))
                self._declared = True
        else:
            raise LoginRefused(LoginStatus.INITIATOR_ERROR, f"login in stage {pdu.csg}")
        if not pdu.transit:
            return answers, False, 0
        if pdu.nsg not in (Stage.OPERATIONAL, Stage.FULL_FEATURE) or pdu.nsg <= pdu.csg:
            raise LoginRefused(LoginStatus.INITIATOR_ERROR, f"cannot go from stage {pdu.csg} to {pdu.nsg}")
        if not self.authenticated:
            return answers, False, 0  # CHAP goes on: the target does not move on yet
        return answers, True, pdu.nsg

    def _names(self, values: dict[str, str]) -> None:
        self.initiator_name = values.get("InitiatorName", "")
        if not self.initiator_name:
            raise LoginRefused(LoginStatus.MISSING_PARAMETER, "no InitiatorName")
        session_type = values.get("SessionType", "Normal")
        if session_type not in ("Normal", "Discovery"):
            raise LoginRefused(LoginStatus.SESSION_TYPE_NOT_SUPPORTED, f"SessionType={session_type}")
        self.discovery = session_type == "Discovery"
        if self.discovery:
            self.authenticated = True  # discovery names the target; it needs no secret
        elif values.get("TargetName") != self.config.target_name:
            raise LoginRefused(LoginStatus.NOT_FOUND, f"no target {values.get('TargetName')!r} here")

    def _security(self, values: dict[str, str], transit: bool) -> list[tuple[str, str]]:
        chap = self.config.chap
        if self._chap_step == "method":
            methods = [m.strip() for m in values.get("AuthMethod", "None").split(",")]
            if chap is None or self.discovery:
                if "None" not in methods:
                    raise LoginRefused(LoginStatus.AUTHENTICATION_FAILURE, f"AuthMethod {methods}: we offer None")
                self._chap_step = "done"
                return [("AuthMethod", "None")] if "AuthMethod" in values else []
            if "CHAP" not in methods:
                raise LoginRefused(LoginStatus.AUTHENTICATION_FAILURE, "the target requires AuthMethod=CHAP")
            self._chap_step = "algorithm"
            if "CHAP_A" not in values:
                return [("AuthMethod", "CHAP")]
            return [("AuthMethod", "CHAP"), *self._security(values, transit)]
        if self._chap_step == "algorithm":
            if CHAP_MD5 not in [a.strip() for a in values.get("CHAP_A", "").split(",")]:
                raise LoginRefused(LoginStatus.AUTHENTICATION_FAILURE, "CHAP_A must offer 5 (MD5)")
            self._challenge = (os.urandom(1)[0], os.urandom(CHALLENGE_SIZE))
            self._chap_step = "response"
            return [("CHAP_A", CHAP_MD5), ("CHAP_I", str(self._challenge[0])),
                    ("CHAP_C", encode_binary(self._challenge[1]))]
        if self._chap_step == "response":
            assert chap is not None
            try:
                answer = decode_binary(values.get("CHAP_R", ""))
            except ValueError:
                answer = b""
            identifier, challenge = self._challenge
            if values.get("CHAP_N") != chap[0] or not check_response(identifier, chap[1].encode(), challenge, answer):
                raise LoginRefused(LoginStatus.AUTHENTICATION_FAILURE, "CHAP name or response is wrong")
            self.authenticated = True
            self._chap_step = "done"
            if "CHAP_C" in values:
                if self.config.mutual_chap is None:
                    raise LoginRefused(LoginStatus.AUTHENTICATION_FAILURE, "mutual CHAP asked, none configured")
                try:
                    theirs = decode_binary(values["CHAP_C"])
                    their_id = int(values.get("CHAP_I", ""))
                except ValueError:
                    raise LoginRefused(LoginStatus.INITIATOR_ERROR, "malformed CHAP_I or CHAP_C") from None
                if theirs == challenge:
                    raise LoginRefused(LoginStatus.AUTHENTICATION_FAILURE, "mutual CHAP challenge repeats ours")
                name, secret = self.config.mutual_chap
                return [("CHAP_N", name), ("CHAP_R", encode_binary(chap_response(their_id, secret.encode(), theirs)))]
            return []
        return []
