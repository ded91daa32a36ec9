"""BAIR robot pushing: convert the original ``softmotion30_44k`` TFRecords to an HDF5 video file.

The original download unpacks to ``softmotion30_44k/{train,test}/*.tfrecords``. Each record is a
``tf.train.Example`` for one clip of 30 steps with, for step ``t``::

    "{t}/image_aux1/encoded"   bytes: one 64x64 RGB frame, raw uint8 (64*64*3 = 12288 bytes, not PNG)
    "{t}/action"               4 floats: the arm's commanded motion at that step

(other features, e.g. ``{t}/image_main/encoded`` and ``{t}/endeffector_pos``, are ignored). Nothing
here needs TensorFlow: a TFRecord file is a sequence of frames ::

    uint64 length | uint32 masked_crc32c(length) | length bytes of data | uint32 masked_crc32c(data)

(little-endian), and ``tf.train.Example`` is a small protocol buffer read by :func:`parse_example`.
:func:`encode_example` and :func:`write_tfrecord` write the same format, for tests and small samples.

The original train/test split is kept; ``val_fraction`` of the training clips, chosen by a generator
seeded with ``seed``, become the ``val`` split. The output follows :mod:`videogen_lite.data.hdf5`,
one episode per clip: frames uint8 ``[30, 64, 64, 3]`` (pixel-exact), actions float32 ``[30, 4]``.
"""
from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .hdf5 import HDF5Writer

IMAGE_KEY = "{t}/image_aux1/encoded"
ACTION_KEY = "{t}/action"


# ---------------------------------------------------------------------------------------------------
# CRC-32C (Castagnoli), as TFRecord framing uses it


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (pure Python: about 5 MB/s)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The rotated-and-offset CRC-32C that TFRecord files store."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------------
# TFRecord files


def read_tfrecord(path: str | Path, verify_data: bool = False) -> Iterator[bytes]:
    """The records of a TFRecord file. Length checksums are always verified; data checksums only with
    ``verify_data`` (pure-Python CRC is slow on the 16 GB of BAIR). A broken file raises ValueError."""
    with open(path, "rb") as f:
        while header := f.read(12):
            if len(header) < 12:
                raise ValueError(f"{path}: truncated TFRecord header at byte {f.tell() - len(header)}")
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != length_crc:
                raise ValueError(f"{path} is not a TFRecord file (length checksum mismatch at byte "
                                 f"{f.tell() - 12}); expected the softmotion30_44k *.tfrecords files")
            data = f.read(length)
            footer = f.read(4)
            if len(data) < length or len(footer) < 4:
                raise ValueError(f"{path}: truncated TFRecord (a record of {length} bytes is cut short)")
            if verify_data and masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                raise ValueError(f"{path}: a record's data checksum does not match; the file is corrupt")
            yield data


def count_records(path: str | Path) -> int:
    """Number of records in a TFRecord file, reading only the headers."""
    count = 0
    with open(path, "rb") as f:
        while header := f.read(12):
            length, _ = struct.unpack("<QI", header.ljust(12, b"\0"))
            f.seek(length + 4, 1)
            count += 1
    return count


def write_tfrecord(path: str | Path, records: list[bytes]) -> None:
    """Write ``records`` as a TFRecord file."""
    with open(path, "wb") as f:
        for data in records:
            length = struct.pack("<Q", len(data))
            f.write(length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data)))


# ---------------------------------------------------------------------------------------------------
# tf.train.Example, a protocol buffer:
#   Example {Features features = 1}   Features {map<string, Feature> feature = 1}
#   Feature {oneof: BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3}
#   each list {repeated value = 1}, floats and ints usually packed


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of a protobuf message; length-delimited values as memoryviews."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"not a tf.train.Example: unsupported protobuf wire type {wire}")
        yield number, wire, value


def _feature(data: memoryview) -> list[bytes] | np.ndarray:
    for kind, _, payload in _fields(data):
        values, floats = [], []
        for _, wire, value in _fields(payload):
            if kind == 1:  # bytes
                values.append(bytes(value))
            elif kind == 2:  # floats: packed (wire 2) or one at a time (wire 5)
                floats.append(np.frombuffer(value, "<f4"))
            elif kind == 3:  # int64: packed varints or single varints
                if wire == 2:
                    pos = 0
                    while pos < len(value):
                        number, pos = _varint(value, pos)
                        values.append(number)
                else:
                    values.append(value)
        if kind == 2:
            return np.concatenate(floats) if floats else np.zeros(0, np.float32)
        if kind == 3:
            return np.array([v - (1 << 64) if v >= 1 << 63 else v for v in values], np.int64)
        return values
    return []


def parse_example(data: bytes) -> dict[str, list[bytes] | np.ndarray]:
    """A serialized ``tf.train.Example`` -> {feature name: list of bytes, or float32/int64 array}."""
    features = {}
    for number, _, value in _fields(memoryview(data)):
        if number != 1:
            continue
        for _, _, entry in _fields(value):  # map entries of Features
            key, feature = None, memoryview(b"")
            for field, _, part in _fields(entry):
                if field == 1:
                    key = bytes(part).decode()
                elif field == 2:
                    feature = part
            features[key] = _feature(feature)
    return features


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def encode_example(features: dict[str, bytes | list[bytes] | np.ndarray]) -> bytes:
    """Serialize a ``tf.train.Example``: bytes (or a list of them) become a BytesList, a float array a
    packed FloatList."""
    entries = b""
    for key, value in features.items():
        if isinstance(value, np.ndarray):
            feature = _length_delimited(2, _length_delimited(1, value.astype("<f4").tobytes()))
        else:
            items = [value] if isinstance(value, bytes) else value
            feature = _length_delimited(1, b"".join(_length_delimited(1, item) for item in items))
        entries += _length_delimited(1, _length_delimited(1, key.encode()) + _length_delimited(2, feature))
    return _length_delimited(1, entries)


# ---------------------------------------------------------------------------------------------------
# BAIR clips


def bair_clip(features: dict) -> tuple[np.ndarray, np.ndarray]:
    """One parsed BAIR example -> frames uint8 ``[T, 64, 64, 3]`` and actions float32 ``[T, 4]``."""
    steps = 0
    while IMAGE_KEY.format(t=steps) in features:
        steps += 1
    if steps == 0:
        raise ValueError(f"not a BAIR example: no feature {IMAGE_KEY.format(t=0)!r}; "
                         f"it has {sorted(features)[:6]}")
    frames, actions = [], []
    for t in range(steps):
        (image,) = features[IMAGE_KEY.format(t=t)]
        if len(image) != 64 * 64 * 3:
            raise ValueError(f"{IMAGE_KEY.format(t=t)!r} holds {len(image)} bytes; expected a raw 64x64 RGB "
                             "frame of 12288 bytes")
        frames.append(np.frombuffer(image, np.uint8).reshape(64, 64, 3))
        action = features.get(ACTION_KEY.format(t=t))
        if action is None or len(action) != 4:
            raise ValueError(f"{ACTION_KEY.format(t=t)!r} is missing or not 4 floats in a BAIR example")
        actions.append(action)
    return np.stack(frames), np.stack(actions).astype(np.float32)


def convert_bair(tfrecords_dir: str | Path, out: str | Path, val_fraction: float = 0.05, seed: int = 0,
                 verify_data: bool = False, progress: bool = True) -> dict:
    """Convert ``tfrecords_dir/{train,test}/*.tfrecords`` to the HDF5 file ``out``.

    Returns the number of clips per split, e.g. ``{"train": 41101, "val": 2163, "test": 256}``.
    """
    root = Path(tfrecords_dir)
    files = {split: sorted((root / split).glob("*.tfrecords")) for split in ("train", "test")}
    if not files["train"] or not files["test"]:
        raise ValueError(f"{str(root)!r} does not look like softmotion30_44k: expected *.tfrecords files in "
                         f"both {root / 'train'} and {root / 'test'}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_train = sum(count_records(path) for path in files["train"])
    val = set(np.random.default_rng(seed).permutation(n_train)[:round(n_train * val_fraction)].tolist())
    counts = {"train": 0, "val": 0, "test": 0}
    attrs = {"action_size": 4, "steps_per_clip": 30, "val_fraction": val_fraction, "seed": seed,
                 "image_feature": IMAGE_KEY, "action_feature": ACTION_KEY}
    with HDF5Writer(out, source="bair", attrs=attrs) as writer:
        index = 0
        for split in ("train", "test"):
            for path in files[split]:
                for record in read_tfrecord(path, verify_data):
                    frames, actions = bair_clip(parse_example(record))
                    target = "val" if split == "train" and index in val else split
                    index += split == "train"
                    writer.add_episode(target, frames, actions)
                    counts[target] += 1
                if progress:
                    print(f"{path.name}: {counts}", file=sys.stderr)
    return counts
