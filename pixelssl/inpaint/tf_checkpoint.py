"""Reading a TensorFlow checkpoint (a V2 "tensor bundle") without TensorFlow.

A bundle is ``PREFIX.index`` plus ``PREFIX.data-00000-of-0000N``. The index is a LevelDB table (SSTable, read by
``tf_index_format``) mapping tensor names to ``BundleEntryProto`` (dtype, shape, shard, offset, size, crc32c) and
the key ``""`` to a ``BundleHeaderProto`` (number of shards, endianness, version); the data files hold the raw
tensor bytes. The entries follow TensorFlow's ``core/util/tensor_bundle/tensor_bundle.cc`` +
``core/protobuf/tensor_bundle.proto`` (their crc32c is masked, ``pixelssl.inpaint.crc32c``).

Example::

    bundle = TensorBundle.open("model_logs/release_places2_256/snap-0")  # or the folder with its `checkpoint` file
    kernel = bundle.read("inpaint_net/conv1/kernel")  # numpy (5, 5, 5, 32), checksum verified
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixelssl.errors import WeightsFileError
from pixelssl.inpaint.crc32c import crc32c, unmask_crc
from pixelssl.inpaint.tf_index_format import proto_fields, read_table, signed64

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


# --- the index entries (tensor_bundle.proto) -----------------------------------------------------------------

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
