"""Reading a TensorFlow checkpoint (a V2 "tensor bundle") without TensorFlow.

A bundle is ``PREFIX.index`` plus ``PREFIX.data-00000-of-0000N``. The index is a LevelDB table (SSTable) mapping
tensor names to ``BundleEntryProto`` (dtype, shape, shard, offset, size, crc32c) and the key ``""`` to a
``BundleHeaderProto`` (number of shards, endianness, version); the data files hold the raw tensor bytes. The
layouts followed here are TensorFlow's ``core/lib/io/format.cc`` / ``table_builder.cc`` (the SSTable: data blocks of
prefix-compressed entries with restart points, a metaindex block, an index block, a 48-byte footer ending in the
magic ``0xdb4775248b80fb57``; every block followed by a type byte and a masked crc32c) and
``core/util/tensor_bundle/tensor_bundle.cc`` + ``core/protobuf/tensor_bundle.proto`` (the entries; their crc32c is
masked too). TensorFlow writes the index uncompressed; Snappy-compressed blocks are refused in one line.

Example::

    bundle = TensorBundle.open("model_logs/release_places2_256/snap-0")  # or the folder with its `checkpoint` file
    kernel = bundle.read("inpaint_net/conv1/kernel")  # numpy (5, 5, 5, 32), checksum verified
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixelssl.errors import WeightsFileError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # two BlockHandles padded to 40 bytes, then the 8-byte magic
BLOCK_TRAILER_SIZE = 5  # compression type byte + masked crc32c of (block contents + type byte)
NO_COMPRESSION, SNAPPY_COMPRESSION = 0, 1
HEADER_KEY = ""

# TensorFlow's DataType enum (types.proto) -> numpy dtype, for the dtypes whose bytes are a plain array.
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 4: np.dtype("u1"), 5: np.dtype("<i2"),
    6: np.dtype("i1"), 8: np.dtype("<c8"), 9: np.dtype("<i8"), 10: np.dtype("?"), 17: np.dtype("<u2"),
    18: np.dtype("<c16"), 19: np.dtype("<f2"), 22: np.dtype("<u4"), 23: np.dtype("<u8"),
}
DT_BFLOAT16 = 14  # read as float32 (bfloat16 is the upper half of a float32)
DTYPE_NAMES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
               8: "complex64", 9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16", 18: "complex128",
               19: "float16", 20: "resource", 21: "variant", 22: "uint32", 23: "uint64"}


# --- crc32c (Castagnoli), as TensorFlow and LevelDB checksum blocks and tensors --------------------------------

CRC32C_POLY = 0x82F63B78  # reflected 0x1EDC6F41
MASK_DELTA = 0xA282EAD8


def _crc_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(CRC32C_POLY), table >> 1).astype(np.uint32)
    return table


CRC_TABLE = _crc_table()
_CRC_TABLE_LIST = CRC_TABLE.tolist()


def _crc_bytes(crc: int, data: bytes | memoryview) -> int:
    """Raw (no pre/post inversion) reflected crc32c update, one byte at a time: for short inputs and tails."""
    table = _CRC_TABLE_LIST
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


@functools.cache
def _zero_shift_tables(length: int) -> tuple[list[int], ...]:
    """The linear map "append ``length`` zero bytes" on raw crc states, as 4 byte-indexed lookup tables."""
    basis = np.uint32(1) << np.arange(32, dtype=np.uint32)  # (32,) one state per bit
    for _ in range(length):
        basis = CRC_TABLE[basis & 0xFF] ^ (basis >> 8)
    bits = ((np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1).astype(bool)  # (256, 8)
    return tuple(np.bitwise_xor.reduce(np.where(bits, basis[None, 8 * k:8 * k + 8], np.uint32(0)), axis=1).tolist()
                 for k in range(4))


def crc32c(data: bytes | bytearray | memoryview | np.ndarray, crc: int = 0) -> int:
    """crc32c of ``data`` (continuing ``crc``, a finished checksum), table-driven and vectorised over lanes:
    the data is cut into lanes of equal length whose crcs numpy advances together one byte column at a time; the
    lanes are then folded in order, shifting the running state by one lane of zero bytes (crc is linear).
    About 100 MB/s (one core); a byte-at-a-time loop in Python manages about 5 MB/s."""
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1).view(np.uint8)
    state = crc ^ 0xFFFFFFFF
    lane_bytes = 256 if buf.size < 1 << 22 else 2048  # fewer numpy calls for small tensors, fewer lanes for large
    lanes = buf.size // lane_bytes
    if lanes >= 16:
        columns = np.ascontiguousarray(buf[:lanes * lane_bytes].reshape(lanes, lane_bytes).T)  # (lane_bytes, lanes)
        states = np.zeros(lanes, dtype=np.uint32)
        states[0] = state
        for column in columns:
            states = CRC_TABLE[(states ^ column) & 0xFF] ^ (states >> 8)
        s0, s1, s2, s3 = _zero_shift_tables(lane_bytes)
        state = 0
        for lane_state in states.tolist():  # state(A || B) = shift(state(A), len(B)) ^ state_from_zero(B)
            state = (s0[state & 0xFF] ^ s1[(state >> 8) & 0xFF] ^ s2[(state >> 16) & 0xFF]
                     ^ s3[state >> 24] ^ lane_state)
        buf = buf[lanes * lane_bytes:]
    return _crc_bytes(state, buf.tobytes()) ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """TensorFlow / LevelDB ``crc32c::Mask``: rotate right by 15 bits and add a constant (stored checksums)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    rot = (masked - MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# --- protobuf wire format (only what the bundle protos use) ---------------------------------------------------

def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A base-128 varint at ``pos``: (value, position after it)."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")


def signed64(value: int) -> int:
    """A varint-encoded int32/int64 field as a signed number (negatives are ten-byte two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def proto_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field: int for varint / fixed32 / fixed64, bytes for length-delimited."""
    pos = 0
    while pos < len(buf):
        tag, pos = read_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise ValueError("truncated fixed64")
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = read_varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated length-delimited field")
            value, pos = bytes(buf[pos:pos + length]), pos + length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise ValueError("truncated fixed32")
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire} (field {number})")
        if number == 0:
            raise ValueError("field number 0")
        yield number, wire, value


@dataclass(frozen=True)
class BundleHeader:
    """``BundleHeaderProto``: num_shards (1), endianness (2: LITTLE = 0, BIG = 1), version (3: VersionDef)."""

    num_shards: int = 0
    big_endian: bool = False
    producer: int = 0
    min_consumer: int = 0

    @classmethod
    def parse(cls, buf: bytes) -> BundleHeader:
        num_shards, big, producer, min_consumer = 0, False, 0, 0
        for number, wire, value in proto_fields(buf):
            if number == 1 and wire == 0:
                num_shards = signed64(value)
            elif number == 2 and wire == 0:
                big = value == 1
            elif number == 3 and wire == 2:
                for n, w, v in proto_fields(value):
                    if n == 1 and w == 0:
                        producer = signed64(v)
                    elif n == 2 and w == 0:
                        min_consumer = signed64(v)
        return cls(num_shards, big, producer, min_consumer)


@dataclass(frozen=True)
class TensorEntry:
    """``BundleEntryProto``: dtype (1), shape (2: TensorShapeProto, dims (2) of size (1)), shard_id (3), offset (4),
    size (5), crc32c (6, fixed32, masked), slices (7: set for partitioned variables, not read here)."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int = 0
    offset: int = 0
    size: int = 0
    crc32c: int = 0  # as stored: masked
    sliced: bool = False

    @classmethod
    def parse(cls, name: str, buf: bytes) -> TensorEntry:
        fields: dict = {"dtype": 0, "shape": (), "shard_id": 0, "offset": 0, "size": 0, "crc32c": 0, "sliced": False}
        for number, wire, value in proto_fields(buf):
            if number == 1 and wire == 0:
                fields["dtype"] = value
            elif number == 2 and wire == 2:
                fields["shape"] = _parse_shape(value)
            elif number in (3, 4, 5) and wire == 0:
                fields[{3: "shard_id", 4: "offset", 5: "size"}[number]] = signed64(value)
            elif number == 6 and wire == 5:
                fields["crc32c"] = value
            elif number == 7 and wire == 2:
                fields["sliced"] = True
        return cls(name, **fields)

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES.get(self.dtype, f"DataType {self.dtype}")


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for number, wire, value in proto_fields(buf):
        if number == 2 and wire == 2:  # Dim { int64 size = 1; string name = 2; }
            size = 0
            for n, w, v in proto_fields(value):
                if n == 1 and w == 0:
                    size = signed64(v)
            dims.append(size)
        elif number == 3 and wire == 0 and value:
            raise ValueError("shape of unknown rank")
    if any(d < 0 for d in dims):
        raise ValueError(f"shape {dims} has unknown dimensions")
    return tuple(dims)


# --- the SSTable ---------------------------------------------------------------------------------------------

def _block_handle(buf: bytes, pos: int) -> tuple[tuple[int, int], int]:
    offset, pos = read_varint(buf, pos)
    size, pos = read_varint(buf, pos)
    return (offset, size), pos


def _read_block(table: bytes, handle: tuple[int, int], path: Path, what: str) -> bytes:
    """A block's contents after checking its bounds, its trailer's masked crc32c and its compression type."""
    offset, size = handle
    if offset + size + BLOCK_TRAILER_SIZE > len(table) - FOOTER_SIZE:
        raise WeightsFileError(f"'{path}' is truncated or corrupt: its {what} block [{offset}, {offset + size}) "
                               f"lies outside the file ({len(table)} bytes)")
    contents = table[offset:offset + size]
    kind = table[offset + size]
    stored = int.from_bytes(table[offset + size + 1:offset + size + 5], "little")
    if unmask_crc(stored) != crc32c(table[offset:offset + size + 1]):
        raise WeightsFileError(f"'{path}' is corrupt: the checksum of its {what} block at byte {offset} does not match")
    if kind == SNAPPY_COMPRESSION:
        raise WeightsFileError(f"'{path}' has a Snappy-compressed {what} block, which pixelssl does not read "
                               "(TensorFlow writes checkpoint indexes uncompressed; re-save it with TensorFlow)")
    if kind != NO_COMPRESSION:
        raise WeightsFileError(f"'{path}' has a {what} block of unknown compression type {kind}")
    return contents


def block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of each entry of a block: shared-prefix length, rest length, value length (varints), rest, value;
    the restart array (uint32 offsets) and its count end the block."""
    if len(block) < 4:
        raise ValueError("block shorter than its restart count")
    num_restarts = int.from_bytes(block[-4:], "little")
    limit = len(block) - 4 - 4 * num_restarts
    if num_restarts == 0 or limit < 0:
        raise ValueError(f"block with {num_restarts} restart points")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = read_varint(block, pos)
        non_shared, pos = read_varint(block, pos)
        value_length, pos = read_varint(block, pos)
        if shared > len(key) or pos + non_shared + value_length > limit:
            raise ValueError("block entry out of bounds")
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        yield key, block[pos:pos + value_length]
        pos += value_length


def read_table(path: str | Path) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of a LevelDB-format table file, in file order (TensorFlow's checkpoint ``.index``)."""
    path = Path(path)
    table = path.read_bytes()
    if len(table) < FOOTER_SIZE:
        raise WeightsFileError(f"'{path}' is not a TensorFlow checkpoint index: {len(table)} bytes, shorter than "
                               f"a table footer ({FOOTER_SIZE})")
    footer = table[-FOOTER_SIZE:]
    magic = int.from_bytes(footer[-8:], "little")
    if magic != TABLE_MAGIC:
        raise WeightsFileError(f"'{path}' is not a TensorFlow checkpoint index: bad magic number 0x{magic:016x} "
                               f"(expected 0x{TABLE_MAGIC:016x})")
    try:
        _metaindex, pos = _block_handle(footer, 0)
        index_handle, _ = _block_handle(footer, pos)
        index = _read_block(table, index_handle, path, "index")
        entries = []
        for _, handle_bytes in block_entries(index):
            handle, _ = _block_handle(handle_bytes, 0)
            entries += block_entries(_read_block(table, handle, path, "data"))
    except ValueError as exc:
        raise WeightsFileError(f"'{path}' is corrupt: {exc}") from exc
    return entries


# --- the bundle ----------------------------------------------------------------------------------------------

def data_path(prefix: Path, shard: int, num_shards: int) -> Path:
    return prefix.with_name(f"{prefix.name}.data-{shard:05d}-of-{num_shards:05d}")


def checkpoint_prefix(path: str | Path) -> Path:
    """The bundle prefix of a checkpoint folder (its ``checkpoint`` file, or ``checkpoint.txt`` as Google Drive
    renames it, else its only ``.index``), of a ``PREFIX.index`` / ``.data-*`` file, or of a prefix itself."""
    path = Path(path)
    if path.is_dir():
        for name in ("checkpoint", "checkpoint.txt"):
            state = path / name
            if state.is_file():
                found = re.search(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"', state.read_text(errors="replace"),
                                  re.MULTILINE)
                if not found:
                    raise WeightsFileError(f"'{state}' names no model_checkpoint_path")
                named = Path(found.group(1).encode().decode("unicode_escape"))
                for candidate in (named if named.is_absolute() else path / named, path / named.name):
                    if candidate.with_name(candidate.name + ".index").is_file():
                        return candidate
                raise WeightsFileError(f"'{state}' names the checkpoint '{named}', but "
                                       f"'{path / (named.name + '.index')}' does not exist")
        indexes = sorted(path.glob("*.index"))
        if len(indexes) == 1:
            return indexes[0].with_suffix("")
        if not indexes:
            raise WeightsFileError(f"'{path}' holds no TensorFlow checkpoint (no 'checkpoint' file, no *.index)")
        raise WeightsFileError(f"'{path}' holds {len(indexes)} checkpoints and no 'checkpoint' file naming one; pass "
                               f"the prefix, e.g. '{indexes[-1].with_suffix('')}'")
    if path.suffix == ".index":
        return path.with_suffix("")
    data = re.fullmatch(r"(.*)\.data-\d{5}-of-\d{5}", path.name)
    if data:
        return path.with_name(data.group(1))
    if path.with_name(path.name + ".index").is_file():
        return path
    raise WeightsFileError(f"'{path}' is neither a checkpoint folder nor a checkpoint prefix "
                           f"('{path.name}.index' does not exist)")


class TensorBundle:
    """The tensors of a TensorFlow V2 checkpoint: ``entries`` (name -> ``TensorEntry``) and ``read(name)``."""

    def __init__(self, prefix: Path, header: BundleHeader, entries: dict[str, TensorEntry]) -> None:
        self.prefix = prefix
        self.header = header
        self.entries = entries

    @classmethod
    def open(cls, path: str | Path) -> TensorBundle:
        """Read the index of the checkpoint at ``path`` (see ``checkpoint_prefix``) and check that every tensor's
        bytes lie inside its data file."""
        prefix = checkpoint_prefix(path)
        index = prefix.with_name(prefix.name + ".index")
        if not index.is_file():
            raise WeightsFileError(f"checkpoint index '{index}' does not exist")
        header, entries = None, {}
        for key, value in read_table(index):
            name = key.decode("utf-8", errors="replace")
            try:
                if key == HEADER_KEY.encode():
                    header = BundleHeader.parse(value)
                else:
                    entries[name] = TensorEntry.parse(name, value)
            except ValueError as exc:
                raise WeightsFileError(f"'{index}' is corrupt: the entry of '{name}' cannot be parsed ({exc})") from exc
        if header is None:
            raise WeightsFileError(f"'{index}' has no bundle header; is it a TensorFlow V2 checkpoint index?")
        if header.num_shards < 1:
            raise WeightsFileError(f"'{index}' declares {header.num_shards} data shards")
        bundle = cls(prefix, header, entries)
        bundle._check_extents()
        return bundle

    def _check_extents(self) -> None:
        sizes: dict[int, int] = {}
        for entry in self.entries.values():
            if entry.sliced:
                continue
            if not 0 <= entry.shard_id < self.header.num_shards:
                raise WeightsFileError(f"'{self.prefix}.index' is corrupt: tensor '{entry.name}' is in shard "
                                       f"{entry.shard_id} of {self.header.num_shards}")
            if entry.shard_id not in sizes:
                path = data_path(self.prefix, entry.shard_id, self.header.num_shards)
                if not path.is_file():
                    raise WeightsFileError(f"checkpoint data file '{path}' does not exist")
                sizes[entry.shard_id] = path.stat().st_size
            end = entry.offset + entry.size
            if entry.offset < 0 or entry.size < 0 or end > sizes[entry.shard_id]:
                path = data_path(self.prefix, entry.shard_id, self.header.num_shards)
                raise WeightsFileError(f"'{path}' is truncated: tensor '{entry.name}' needs bytes [{entry.offset}, "
                                       f"{end}) but the file has {sizes[entry.shard_id]}")

    def read(self, name: str, verify: bool = True) -> np.ndarray:
        """Tensor ``name`` as a numpy array (native byte order); ``verify`` checks its crc32c against the index."""
        entry = self.entries.get(name)
        if entry is None:
            raise WeightsFileError(f"tensor '{name}' is not in checkpoint '{self.prefix}'")
        if entry.sliced:
            raise WeightsFileError(f"tensor '{name}' of '{self.prefix}' is a partitioned variable, "
                                   "which pixelssl does not read")
        if entry.dtype not in DTYPES and entry.dtype != DT_BFLOAT16:
            raise WeightsFileError(f"tensor '{name}' of '{self.prefix}' has dtype {entry.dtype_name}, "
                                   "which pixelssl does not read")
        dtype = np.dtype("<u2") if entry.dtype == DT_BFLOAT16 else DTYPES[entry.dtype]
        if self.header.big_endian:
            dtype = dtype.newbyteorder(">")
        count = int(np.prod(entry.shape, dtype=np.int64))
        if entry.size != count * dtype.itemsize:
            raise WeightsFileError(f"'{self.prefix}.index' is corrupt: tensor '{name}' of shape {entry.shape} "
                                   f"({entry.dtype_name}) has {entry.size} bytes, not {count * dtype.itemsize}")
        path = data_path(self.prefix, entry.shard_id, self.header.num_shards)
        with open(path, "rb") as handle:
            handle.seek(entry.offset)
            data = handle.read(entry.size)
        if len(data) != entry.size:
            raise WeightsFileError(f"'{path}' is truncated: tensor '{name}' needs bytes [{entry.offset}, "
                                   f"{entry.offset + entry.size})")
        if verify and crc32c(data) != unmask_crc(entry.crc32c):
            raise WeightsFileError(f"'{path}' is corrupt: the checksum of tensor '{name}' does not match its index")
        array = np.frombuffer(data, dtype=dtype).reshape(entry.shape)
        if entry.dtype == DT_BFLOAT16:
            return (array.astype(np.uint32) << 16).view(np.float32)
        return array.astype(dtype.newbyteorder("="))  # a writable copy in native order
