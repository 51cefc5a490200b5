"""Read TensorFlow (v1 "bundle") checkpoints with numpy alone: ``<prefix>.index`` + ``<prefix>.data-*``.

The index is a LevelDB-style sorted table. Its 48-byte footer holds the block handles (varint
offset and size) of the meta-index and the index block, then an 8-byte magic number. Blocks hold
prefix-compressed entries (shared length, unshared length, value length, key suffix, value) and end
with a restart array; each block is followed by a 1-byte compression type (0: none) and a 4-byte
checksum. The index block maps keys to data-block handles. In the data blocks, the empty key holds
the bundle header; every other key is a variable name whose value is a ``BundleEntryProto``
(field 1 dtype, 2 shape, 3 shard, 4 offset, 5 size in bytes). The tensors are raw little-endian
arrays in the data shard at those offsets.
"""

from __future__ import annotations

import glob
import struct
from pathlib import Path

import numpy as np

MAGIC = 0xDB4775248B80FB57
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 19: np.float16}


def read_checkpoint(prefix: str | Path, skip_optimizer: bool = True) -> dict[str, np.ndarray]:
    """All variables of a checkpoint, by name.

    Parameters
    ----------
    prefix : path
        The checkpoint prefix: ``<prefix>.index`` and ``<prefix>.data-00000-of-00001`` must exist
        (the prefix may end with a folder separator when the files are named ``.index`` ...).
    skip_optimizer : bool
        Leave out optimizer state (Adam slots, ``beta*_power``), which are not weights.

    Raises
    ------
    FileNotFoundError, ValueError
        Naming the file when it is missing, not a checkpoint, compressed, or inconsistent.
    """
    prefix = str(prefix)
    index = Path(prefix + ".index")
    if not index.is_file():
        raise FileNotFoundError(f"Checkpoint index {index} does not exist.")
    entries = _read_table(index.read_bytes(), index)
    out = {}
    shards: dict[int, bytes] = {}
    for name, value in entries.items():
        if not name or (skip_optimizer and ("/Adam" in name or name.startswith("beta") and "_power" in name)):
            continue
        fields = _parse_proto(value)
        dtype = DTYPES.get(fields.get(1, [1])[0])
        if dtype is None:
            raise ValueError(f"{index}: variable {name!r} has an unsupported dtype code {fields.get(1)}.")
        shape = [(_parse_proto(dim).get(1, [0])[0]) for dim in _parse_proto(fields.get(2, [b""])[0]).get(2, [])]
        shard, offset, size = fields.get(3, [0])[0], fields.get(4, [0])[0], fields.get(5, [0])[0]
        if shard not in shards:
            data = Path(f"{prefix}.data-{shard:05d}-of-{_n_shards(prefix):05d}")
            if not data.is_file():
                raise FileNotFoundError(f"Checkpoint data shard {data} does not exist.")
            shards[shard] = data.read_bytes()
        raw = shards[shard][offset : offset + size]
        if len(raw) != size or size != int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize:
            raise ValueError(f"{index}: variable {name!r} of shape {shape} does not match its {size} bytes.")
        out[name] = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape).copy()
    return out


def _n_shards(prefix: str) -> int:
    found = sorted(glob.glob(glob.escape(prefix) + ".data-*-of-*"))
    if not found:
        raise FileNotFoundError(f"No data shard {prefix}.data-*-of-* beside the index.")
    return int(found[0].rsplit("-of-", 1)[1])


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _read_table(buf: bytes, path: Path) -> dict[str, bytes]:
    if len(buf) < 48 or struct.unpack("<Q", buf[-8:])[0] != MAGIC:
        raise ValueError(f"{path} is not a TensorFlow checkpoint index (bad footer magic).")
    pos = len(buf) - 48
    _, pos = _varint(buf, pos)  # meta-index offset
    _, pos = _varint(buf, pos)  # meta-index size
    index_offset, pos = _varint(buf, pos)
    index_size, pos = _varint(buf, pos)
    entries = {}
    for _, handle in _read_block(buf, index_offset, index_size, path):
        offset, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        entries.update(_read_block(buf, offset, size, path))
    return entries


def _read_block(buf: bytes, offset: int, size: int, path: Path) -> list[tuple[str, bytes]]:
    if buf[offset + size] != 0:
        raise ValueError(f"{path}: compressed blocks are not supported.")
    block = buf[offset : offset + size]
    n_restarts = struct.unpack("<I", block[-4:])[0]
    end = len(block) - 4 - 4 * n_restarts
    pos, key, out = 0, b"", []
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        out.append((key.decode(), block[pos : pos + length]))
        pos += length
    return out


def _parse_proto(buf: bytes) -> dict[int, list]:
    """Fields of a protobuf message: number -> values (ints for varints and fixed, bytes otherwise)."""
    fields: dict[int, list] = {}
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack("<Q", buf[pos : pos + 8])[0], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack("<I", buf[pos : pos + 4])[0], pos + 4
        else:
            raise ValueError(f"Unsupported protobuf wire type {wire}.")
        fields.setdefault(number, []).append(value)
    return fields
