#!/bin/busybox sh
# /init of the t10k-lab guest: load the tape stack, wait for /dev/nst0, run the script the
# host appended as /t10k/run.sh (or a shell), print marker lines, power off.
# Kernel command line: t10k.mode=run|shell  t10k.tape=0|1  t10k.nonce=N  t10k.wait=SECONDS
# Debian's static busybox prefers its own applets (tar, mt) from its shell: scripts run in bash.
/bin/busybox mkdir -p /proc /sys /dev /tmp /root /var/bacula /run
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mount -t tmpfs tmpfs /tmp
export PATH=/usr/bin:/usr/sbin:/bin:/sbin HOME=/root TERM=vt100 TZ=UTC TAPE=/dev/nst0
echo 1 > /proc/sys/kernel/printk   # kernel messages off the console: it carries our results
mode=run tape=0 nonce=0 wait=20
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    t10k.mode=*) mode=${arg#t10k.mode=} ;;
    t10k.tape=*) tape=${arg#t10k.tape=} ;;
    t10k.nonce=*) nonce=${arg#t10k.nonce=} ;;
    t10k.wait=*) wait=${arg#t10k.wait=} ;;
  esac
done
mark() { echo "T10K-GUEST:$nonce:$*"; }
for m in $(cat /etc/t10k/modules); do
  insmod "/lib/modules/$m" || mark "MODULE-FAILED $m"
done
if [ "$tape" = 1 ]; then
  i=0
  while [ ! -c /dev/nst0 ] && [ "$i" -lt $((wait * 10)) ]; do usleep 100000; i=$((i + 1)); done
  if [ -c /dev/nst0 ]; then mark "TAPE /dev/nst0"; else mark "NO-TAPE after ${wait}s"; fi
fi
cd /root
if [ "$mode" = shell ]; then
  echo "t10k-lab guest: GNU tar, mt (mt-st), stenc, sg_raw, sg_requests, sg_opcodes, sg_inq, lsscsi, btape;"
  echo "/dev/nst0 is the drive. Leave with 'exit' (or Ctrl-A X)."
  setsid cttyhack /bin/bash -l
  rc=$?
else
  mark "BEGIN"
  /bin/bash /t10k/run.sh
  rc=$?
  mark "EXIT $rc"
fi
sync
poweroff -f
