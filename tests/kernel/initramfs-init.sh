#!/bin/busybox sh
# /init of the guest's initramfs (guest.sh builds it; busybox is the only program in it).
# Loads the 9p stack, mounts the host root read-only with tmpfs where programs write, runs
# the command that guest.sh left in the writable share, writes its exit status back there,
# powers off. The lines starting "guest-init:" are read by guest.sh: keep them stable.
/bin/busybox --install -s /bin
export PATH=/bin

say() { echo "guest-init: $*"; }
power_off() {
  sync
  poweroff -f
  echo o >/proc/sysrq-trigger # poweroff -f cannot fail as PID 1, but a hang here costs the whole timeout
  sleep 30
}
die() {
  say "$*"
  say "FAILED before the command could run"
  power_off
}

mount -t proc proc /proc && mount -t sysfs sysfs /sys && mount -t devtmpfs devtmpfs /dev ||
  die "cannot mount /proc, /sys or /dev"

# In modules.dep order (guest.sh computed it on the host): virtio core, virtio_pci, 9p.
while read -r m; do
  insmod "/modules/$m.ko" || die "insmod $m failed"
done </modules/order

# msize: 9p over virtio carries at most 512 KiB per request; bigger requests mean fewer round
# trips, which is what costs under TCG. cache=loose on the read-only shares: nothing changes
# them from the guest's side, and it saves a round trip on every path lookup.
p9="trans=virtio,version=9p2000.L,msize=262144"
r=/newroot
mount -t 9p -o "$p9,ro,cache=loose" hostroot $r || die "cannot mount the host root (9p tag hostroot)"
# A second view of the host root that the tmpfs mounts below do not cover (the initramfs's
# mounts are private: nothing mounted on /newroot later shows up here).
mkdir -p /hostro && mount --bind $r /hostro || die "cannot bind the host root to /hostro"

# Where the programs the guest runs (dbus-daemon, python, the tests) need to write.
mount -t tmpfs -o mode=0755 tmpfs $r/run &&
  mount -t tmpfs -o mode=1777 tmpfs $r/tmp &&
  mount -t tmpfs -o mode=1777 tmpfs $r/var/tmp &&
  mount -t tmpfs -o mode=0755 tmpfs $r/var/lib &&
  mount -t proc proc $r/proc &&
  mount -t sysfs sysfs $r/sys &&
  mount -t devtmpfs devtmpfs $r/dev &&
  mkdir -p $r/dev/pts $r/dev/shm &&
  mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $r/dev/pts &&
  mount -t tmpfs -o mode=1777 tmpfs $r/dev/shm ||
  die "cannot mount the guest's tmpfs, proc, sysfs or devtmpfs in the host root"
mkdir -p $r/run/guest/out $r/run/guest/modules
mount -t 9p -o "$p9,cache=none" guestout $r/run/guest/out || die "cannot mount the writable share (9p tag guestout)"
mount -t 9p -o "$p9,ro,cache=loose" kmods $r/run/guest/modules || die "cannot mount the kernel modules (9p tag kmods)"

# The guest kernel's modules on /lib/modules, so modprobe and the kernel's own module
# requests work. A host whose own kernel is not Debian's may have no /lib/modules to bind
# onto, and the root is read-only: then a tmpfs-backed overlay on the library directory
# provides the mount point.
libdir=$r/lib
[ -L $libdir ] && libdir=$r/$(readlink $libdir)
if [ ! -d "$libdir/modules" ]; then
  ovl=/newroot/run/guest/libdir-overlay
  mkdir -p $ovl/upper $ovl/work
  insmod $r/run/guest/modules/"$(uname -r)"/kernel/fs/overlayfs/overlay.ko &&
    mount -t overlay -o "lowerdir=$libdir,upperdir=$ovl/upper,workdir=$ovl/work" overlay "$libdir" &&
    mkdir "$libdir/modules" || die "cannot make a mount point for /lib/modules (overlay on $libdir)"
fi
mount --bind $r/run/guest/modules "$libdir/modules" || die "cannot bind the kernel modules onto /lib/modules"

ip link set lo up 2>/dev/null
ctl=$r/run/guest/out/.guest
[ -f $ctl/cmd ] || die "no command in the writable share ($ctl/cmd)"

# Host paths the command needs that the tmpfs mounts above hide (guest.sh lists them):
# bound back read-only from the second view of the host root.
if [ -f $ctl/keep ]; then
  while read -r p; do
    case $p in
    /tmp/* | /var/tmp/* | /var/lib/* | /run/*)
      [ -d "/hostro$p" ] || continue
      mkdir -p "$r$p" && mount --bind "/hostro$p" "$r$p" || die "cannot keep $p visible in the guest"
      ;;
    esac
  done <$ctl/keep
fi

say "running the command"
chroot $r /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /bin/bash --noprofile --norc /run/guest/out/.guest/cmd </dev/null >$ctl/stdout
status=$?
echo $status >$ctl/status.tmp && mv $ctl/status.tmp $ctl/status
say "command exited with status $status"
power_off
