"""Attacks on live daemons (bounded loops on loopback), one file per family of findings of issue 13."""
