"""Make traffic.pcap: 2,048 Ethernet/IPv4/UDP frames from 512 source addresses of 10.0.0.0/8,
a few sources sending most of the packets (zipf, s = 1.1), as a busy edge sees them.
Run from the repository: python examples/xdp_count/make_traffic.py"""

from pathlib import Path

import numpy as np

from mapbench.measure.usersource import default_frame, write_pcap

PACKETS, SOURCES, ZIPF_S, SEED = 2048, 512, 1.1, 1


def frame(src: int) -> bytes:
    f = bytearray(default_frame())
    f[26:30] = src.to_bytes(4, "big")  # the IPv4 source address (the header checksum is not checked by XDP)
    return bytes(f)


def main() -> None:
    rng = np.random.default_rng(SEED)
    sources = 0x0A000000 + rng.choice(1 << 24, SOURCES, replace=False)
    weights = 1.0 / np.arange(1, SOURCES + 1) ** ZIPF_S
    picks = rng.choice(SOURCES, PACKETS, p=weights / weights.sum())
    write_pcap(Path(__file__).with_name("traffic.pcap"), [frame(int(sources[i])) for i in picks])


if __name__ == "__main__":
    main()
