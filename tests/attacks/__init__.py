"""Attack tests: live daemons on loopback, attacked as someone on the drive LAN, the KMS LAN or the SAN would."""
