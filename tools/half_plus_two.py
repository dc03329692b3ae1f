#!/usr/bin/env python3
"""Writes TF Serving's half_plus_two as a model file for the predict handler:
one dense layer, weight [[0.5]], bias [2.0], identity output (y = 0.5 x + 2),
in the safetensors format (8-byte little-endian header length, JSON header
padded with spaces to a multiple of 8, F32 data).

    tools/half_plus_two.py examples/half_plus_two/half_plus_two.safetensors
"""
import json
import struct
import sys


def image():
    header = {
        "__metadata__": {"output": "identity"},
        "layers.0.weight": {"dtype": "F32", "shape": [1, 1], "data_offsets": [0, 4]},
        "layers.0.bias": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
    }
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + struct.pack("<ff", 0.5, 2.0)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: half_plus_two.py OUT.safetensors")
    with open(sys.argv[1], "wb") as f:
        f.write(image())
