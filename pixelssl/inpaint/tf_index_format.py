"""The byte formats of a TensorFlow checkpoint's ``.index``, read without TensorFlow: a LevelDB table (SSTable)
whose values are protobuf messages (``tf_checkpoint`` parses those messages and reads the tensors).

The table follows TensorFlow's ``core/lib/io/format.cc`` / ``table_builder.cc``: data blocks of prefix-compressed
entries with restart points, a metaindex block, an index block, a 48-byte footer ending in the magic
``0xdb4775248b80fb57``; every block followed by a type byte and a masked crc32c. TensorFlow writes the index
uncompressed; Snappy-compressed blocks are refused in one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pixelssl.errors import WeightsFileError
from pixelssl.inpaint.crc32c import crc32c, unmask_crc

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # two BlockHandles padded to 40 bytes, then the 8-byte magic
BLOCK_TRAILER_SIZE = 5  # compression type byte + masked crc32c of (block contents + type byte)
NO_COMPRESSION, SNAPPY_COMPRESSION = 0, 1


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
