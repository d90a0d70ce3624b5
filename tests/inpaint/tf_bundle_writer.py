"""A small TensorFlow V2 checkpoint writer for the tests, written from the format's specification, not from the reader.

Layout (TensorFlow ``core/lib/io/table_builder.cc``, ``format.cc``; ``core/util/tensor_bundle/tensor_bundle.cc``):

- ``PREFIX.data-00000-of-00001``: the tensors' raw little-endian bytes, one after another.
- ``PREFIX.index``: a LevelDB table. Data blocks of entries ``varint shared | varint non_shared | varint value_len |
  key[shared:] | value``, keys sorted bytewise, a restart point (full key) every ``restart_interval`` entries,
  then the restart offsets (fixed32 each) and their count (fixed32). Each block is followed by its compression type
  (1 byte, 0 = none) and the masked crc32c of contents + type byte (fixed32). Then an empty metaindex block, an
  index block (restart interval 1; key >= the data block's last key, value = its BlockHandle: varint offset,
  varint size) and a 48-byte footer: metaindex handle, index handle, zero padding to 40 bytes, magic
  0xdb4775248b80fb57 (fixed64).
- Key ``""`` holds a ``BundleHeaderProto`` (num_shards = 1, version { producer = 1 }); every tensor name holds a
  ``BundleEntryProto`` (dtype 1, shape 2 { dim 2 { size 1 } }, shard_id 3, offset 4, size 5, crc32c 6 as fixed32,
  masked).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MAGIC = 0xDB4775248B80FB57
TF_DTYPES = {np.dtype("float32"): 1, np.dtype("float64"): 2, np.dtype("int32"): 3, np.dtype("int64"): 9}


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()
_CACHE: dict[bytes, int] = {}  # the tests write the same 14 MB of generator tensors several times


def crc32c(data: bytes) -> int:
    """Castagnoli crc32c, byte at a time (crc32c(b'123456789') == 0xE3069283)."""
    data = bytes(data)
    if len(data) > 4096:
        if data not in _CACHE:
            _CACHE[data] = _crc32c(data)
        return _CACHE[data]
    return _crc32c(data)


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as ten-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3 | 0) + varint(value) if value else b""  # proto3 leaves zeros out


def field_bytes(number: int, value: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(value)) + value


def field_fixed32(number: int, value: int) -> bytes:
    return varint(number << 3 | 5) + struct.pack("<I", value)


def header_proto() -> bytes:
    return field_varint(1, 1) + field_bytes(3, field_varint(1, 1))  # num_shards 1, version { producer 1 }


def entry_proto(dtype: int, shape: tuple[int, ...], offset: int, size: int, crc: int) -> bytes:
    shape_proto = b"".join(field_bytes(2, field_varint(1, d)) for d in shape)
    return (field_varint(1, dtype) + field_bytes(2, shape_proto) + field_varint(4, offset) + field_varint(5, size)
            + field_fixed32(6, masked(crc)))


def block(entries: list[tuple[bytes, bytes]], restart_interval: int) -> bytes:
    out, restarts, last = bytearray(), [], b""
    for n, (key, value) in enumerate(entries):
        shared = 0
        if n % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(key), len(last)) and key[shared] == last[shared]:
                shared += 1
        out += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        last = key
    for r in restarts or [0]:
        out += struct.pack("<I", r)
    return bytes(out + struct.pack("<I", len(restarts) or 1))


def table(entries: list[tuple[bytes, bytes]], block_size: int = 4096, restart_interval: int = 16,
          compression: int = 0) -> bytes:
    """A LevelDB table of sorted (key, value) pairs: data blocks of about ``block_size`` bytes, metaindex, index."""
    out = bytearray()

    def write_block(contents: bytes) -> bytes:
        handle = varint(len(out)) + varint(len(contents))
        trailer = bytes([compression])
        out.extend(contents + trailer + struct.pack("<I", masked(crc32c(contents + trailer))))
        return handle

    index, pending, pending_bytes = [], [], 0
    for key, value in sorted(entries):
        pending.append((key, value))
        pending_bytes += len(key) + len(value) + 3
        if pending_bytes >= block_size:
            index.append((pending[-1][0], write_block(block(pending, restart_interval))))
            pending, pending_bytes = [], 0
    if pending:
        index.append((pending[-1][0], write_block(block(pending, restart_interval))))
    metaindex = write_block(block([], restart_interval))
    index_handle = write_block(block(index, 1))
    footer = (metaindex + index_handle).ljust(40, b"\0") + struct.pack("<Q", MAGIC)
    return bytes(out + footer)


def write_bundle(prefix: str | Path, tensors: dict[str, np.ndarray], **table_options) -> Path:
    """Write ``PREFIX.index`` and ``PREFIX.data-00000-of-00001`` holding ``tensors``; returns the prefix."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    data, entries = bytearray(), [(b"", header_proto())]
    for name in sorted(tensors):
        array = np.asarray(tensors[name])  # (not ascontiguousarray: it makes scalars 1-d)
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        entries.append((name.encode(), entry_proto(TF_DTYPES[array.dtype], array.shape, len(data), len(raw),
                                                   crc32c(raw))))
        data += raw
    prefix.with_name(prefix.name + ".data-00000-of-00001").write_bytes(bytes(data))
    prefix.with_name(prefix.name + ".index").write_bytes(table(entries, **table_options))
    return prefix


# The release generator (v1.0.0 inpaint_model.py, build_inpaint_net, cnum 32): (layer scope, ksize, in, out), in
# build order. gen_deconv layers live in scope NAME with their conv named NAME_conv.
C = 32
RELEASE_GENERATOR = [
    ("conv1", 5, 5, C), ("conv2_downsample", 3, C, 2 * C), ("conv3", 3, 2 * C, 2 * C),
    ("conv4_downsample", 3, 2 * C, 4 * C), ("conv5", 3, 4 * C, 4 * C), ("conv6", 3, 4 * C, 4 * C),
    ("conv7_atrous", 3, 4 * C, 4 * C), ("conv8_atrous", 3, 4 * C, 4 * C), ("conv9_atrous", 3, 4 * C, 4 * C),
    ("conv10_atrous", 3, 4 * C, 4 * C), ("conv11", 3, 4 * C, 4 * C), ("conv12", 3, 4 * C, 4 * C),
    ("conv13_upsample/conv13_upsample_conv", 3, 4 * C, 2 * C), ("conv14", 3, 2 * C, 2 * C),
    ("conv15_upsample/conv15_upsample_conv", 3, 2 * C, C), ("conv16", 3, C, C // 2), ("conv17", 3, C // 2, 3),
    ("xconv1", 5, 5, C), ("xconv2_downsample", 3, C, C), ("xconv3", 3, C, 2 * C),
    ("xconv4_downsample", 3, 2 * C, 2 * C), ("xconv5", 3, 2 * C, 4 * C), ("xconv6", 3, 4 * C, 4 * C),
    ("xconv7_atrous", 3, 4 * C, 4 * C), ("xconv8_atrous", 3, 4 * C, 4 * C), ("xconv9_atrous", 3, 4 * C, 4 * C),
    ("xconv10_atrous", 3, 4 * C, 4 * C),
    ("pmconv1", 5, 5, C), ("pmconv2_downsample", 3, C, C), ("pmconv3", 3, C, 2 * C),
    ("pmconv4_downsample", 3, 2 * C, 4 * C), ("pmconv5", 3, 4 * C, 4 * C), ("pmconv6", 3, 4 * C, 4 * C),
    ("pmconv9", 3, 4 * C, 4 * C), ("pmconv10", 3, 4 * C, 4 * C),
    ("allconv11", 3, 8 * C, 4 * C), ("allconv12", 3, 4 * C, 4 * C),
    ("allconv13_upsample/allconv13_upsample_conv", 3, 4 * C, 2 * C), ("allconv14", 3, 2 * C, 2 * C),
    ("allconv15_upsample/allconv15_upsample_conv", 3, 2 * C, C), ("allconv16", 3, C, C // 2),
    ("allconv17", 3, C // 2, 3),
]


def release_generator_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 values for every release generator variable, scaled 1/sqrt(fan_in) so activations stay O(1)."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for layer, k, cin, cout in RELEASE_GENERATOR:
        tensors[f"inpaint_net/{layer}/kernel"] = (rng.standard_normal((k, k, cin, cout)) / np.sqrt(k * k * cin)
                                                  ).astype(np.float32)
        tensors[f"inpaint_net/{layer}/bias"] = (0.1 * rng.standard_normal(cout)).astype(np.float32)
    return tensors


def release_extras(seed: int = 1) -> dict[str, np.ndarray]:
    """A few of the other variables a release checkpoint holds: critics, Adam slots, beta powers, lr, global_step."""
    rng = np.random.default_rng(seed)
    return {
        "discriminator/discriminator_local/conv1/kernel": rng.standard_normal((5, 5, 3, 64)).astype(np.float32),
        "discriminator/discriminator_local/conv1/bias": np.zeros(64, np.float32),
        "discriminator/dout_global_fc/kernel": rng.standard_normal((256, 1)).astype(np.float32),
        "discriminator/discriminator_local/conv1/kernel/Adam": np.zeros((5, 5, 3, 64), np.float32),
        "inpaint_net/conv1/kernel/Adam": rng.standard_normal((5, 5, 5, C)).astype(np.float32),
        "inpaint_net/conv1/kernel/Adam_1": rng.random((5, 5, 5, C)).astype(np.float32),
        "beta1_power": np.array(0.5 ** 10, np.float32),
        "beta2_power": np.array(0.9 ** 10, np.float64),
        "lr": np.array(1e-4, np.float32),
        "global_step": np.array(1_000_000, np.int32),
        "counter": np.array([-3, 2 ** 40], np.int64),
    }
