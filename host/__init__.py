"""The backup host's side: an iSCSI initiator and the `t10k host` tools.

It meets the drives only on the wire: host/ imports protocol/, never drive_daemon/.
"""
