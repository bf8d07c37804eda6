#!/usr/bin/env bash
# Install the Debian packages mapbench needs, when they are missing:
#   clang, llvm      compile bpf/*.bpf.c (-target bpf)
#   libbpf-dev       headers and libbpf.so for the cffi binding (libbpf 1.1.2 on Debian 12)
#   bpftool          generates vmlinux.h from the running kernel's BTF
#   gcc, pkg-config  build the cffi module at pip install
#   qemu-system-x86, busybox-static, linux-image-amd64
#                    `mapbench matrix`: boot the distribution's other kernel (6.1 on Debian 12) with
#                    virtme-ng (a Python dependency), which needs qemu and busybox for its initramfs
set -euo pipefail
packages=(clang llvm libbpf-dev bpftool gcc pkg-config qemu-system-x86 busybox-static linux-image-amd64)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "mapbench: error: missing Debian packages ${missing[*]}; installing them needs root" >&2
  exit 3
fi
echo "mapbench: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
