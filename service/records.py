"""Record files for batch work: JSON Lines (optionally gzipped), CSV and Parquet, streamed.

The format is chosen by the file name: ``.jsonl`` / ``.ndjson`` (``.gz`` for gzip),
``.csv`` (``.gz`` for gzip) or ``.parquet``. Readers hand out chunks of
``(line, record)`` pairs, where ``line`` is the record's 1-based line in a JSON Lines or CSV
file (the CSV header is line 1) or its 1-based row in a Parquet file, and ``record`` is a
``dict`` or a :class:`BadRecord` saying why the line is no record. Writers take chunks of
dicts. Neither side ever holds more than one chunk, so files larger than memory stream.

Typical use::

    with open_reader(source) as reader, open_writer(target, columns=reader.columns,
                                                    schema=reader.schema) as writer:
        for chunk in reader.chunks(1000):
            writer.write([record for _line, record in chunk if isinstance(record, dict)])

Gzip is read and written with ISA-L (``isal``): the same format at about three times
zlib's speed to read and four to write, which batch runs over compressed archives feel.

pyarrow is imported only when a Parquet file is opened.
"""

from __future__ import annotations

import base64
import csv
import io
import logging
import os
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal, cast

import orjson
from isal import igzip, isal_zlib

from index.closing import ClosedOnExit
from index.errors import SamestoryError

logger = logging.getLogger(__name__)

Record = dict[str, Any]
Kind = Literal["jsonl", "csv", "parquet"]

_KINDS: dict[str, Kind] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
}
# Lines are read in blocks of about this many bytes: fewer calls into gzip and the OS.
_READ_BLOCK = 1 << 20
# ISA-L's level 1 compresses news text smaller than zlib's level 1 at four times its speed
# (SaudiNewsNet's 107 MB: 0.23 s and 35.8 MB; zlib level 1 0.98 s and 38.4 MB), and batch
# output is written once and read rarely.
_GZIP_LEVEL = 1
# What reading a file can raise: OSError (gzip.BadGzipFile too: not gzip at all), EOFError
# (truncated gzip) and isal's error (a damaged deflate stream; its stubs declare it an
# instance, not a class).
_READ_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    EOFError,
    cast(type[Exception], isal_zlib.error),
)
# And reading a CSV file: bad UTF-8 too.
_TEXT_READ_ERRORS: tuple[type[Exception], ...] = (*_READ_ERRORS, UnicodeDecodeError)
# And reading a CSV header: a malformed one.
_HEADER_READ_ERRORS: tuple[type[Exception], ...] = (*_TEXT_READ_ERRORS, csv.Error)
# Article bodies exceed the csv module's default 128 KiB field limit.
_CSV_FIELD_LIMIT = 1 << 30


class RecordFileError(SamestoryError):
    """Root of the errors about record files (their names, contents and writing)."""


class UnsupportedFormatError(RecordFileError, ValueError):
    """The file name does not say which record format to use."""


class InputUnreadableError(RecordFileError):
    """The input cannot be opened or read (missing, unreadable, corrupt, not UTF-8)."""


class OutputError(RecordFileError):
    """A record cannot be written in the output's format."""


@dataclass(frozen=True, slots=True)
class BadRecord:
    """A line that holds no record, and why (bad JSON, wrong number of CSV fields, …)."""

    reason: str


Item = tuple[int, Record | BadRecord]


@dataclass(frozen=True)
class FileFormat:
    """A record format and whether the file is gzipped."""

    kind: Kind
    compressed: bool = False

    @classmethod
    def of(cls, path: Path) -> FileFormat:
        """The format a file name asks for.

        Raises:
            UnsupportedFormatError: the extension is none of the supported ones.
        """
        suffixes = [suffix.lower() for suffix in path.suffixes]
        compressed = bool(suffixes) and suffixes[-1] == ".gz"
        if compressed:
            suffixes.pop()
        kind = _KINDS.get(suffixes[-1]) if suffixes else None
        if kind is None or (compressed and kind == "parquet"):
            raise UnsupportedFormatError(
                f"cannot tell the format of {str(path)!r} from its name; use one of .jsonl, "
                ".jsonl.gz, .ndjson, .ndjson.gz, .csv, .csv.gz or .parquet"
            )
        return cls(kind, compressed)


def _gzip_file(fileobj: IO[bytes], mode: Literal["rb", "wb"]) -> IO[bytes]:
    """An ISA-L gzip stream over ``fileobj`` (level :data:`_GZIP_LEVEL` when writing)."""
    # A GzipFile is a binary file object; typeshed does not declare it an IO[bytes], and
    # isal's IGzipFile is not annotated.
    make: Any = igzip.IGzipFile
    if mode == "rb":
        return cast(IO[bytes], make(fileobj=fileobj, mode=mode))
    return cast(IO[bytes], make(fileobj=fileobj, mode=mode, compresslevel=_GZIP_LEVEL, mtime=0))


def _unreadable(path: Path, error: BaseException) -> InputUnreadableError:
    return InputUnreadableError(f"cannot read {str(path)!r}: {error}")


class RecordReader(ClosedOnExit):
    """Streams the records of one file in chunks.

    Attributes:
        path: the file.
        columns: the column order the file declares (CSV header, Parquet schema), if any.
        schema: the Parquet schema (a ``pyarrow.Schema``), for Parquet input only.
        total: the progress total, in ``unit``: bytes of the file for JSON Lines and CSV
            (compressed bytes when gzipped), rows for Parquet.
        unit: ``"B"`` or ``"records"``.
    """

    columns: list[str] | None = None
    schema: Any = None
    unit: str = "B"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.total = 0

    @abstractmethod
    def chunks(self, size: int) -> Iterator[list[Item]]:
        """Chunks of up to ``size`` items, in file order.

        Raises:
            InputUnreadableError: the file cannot be read on (truncated gzip, bad bytes).
        """

    def chunks_with_lines(self, size: int) -> Iterator[tuple[list[Item], list[bytes] | None]]:
        """:meth:`chunks`, each with the lines its items were read from where the format has
        them (JSON Lines: each item's line as read, newline included), else ``None``."""
        for chunk in self.chunks(size):
            yield chunk, None

    @abstractmethod
    def position(self) -> int:
        """How far reading has got, in ``unit`` (compare with ``total``)."""

    @abstractmethod
    def close(self) -> None:
        """Release the file."""


class _ByteReader(RecordReader):
    """A reader over a (possibly gzipped) byte stream, with progress from the raw file."""

    def __init__(self, path: Path, compressed: bool) -> None:
        super().__init__(path)
        try:
            self._raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 -- closed by close()
        except OSError as error:
            raise _unreadable(path, error) from error
        self.total = os.fstat(self._raw.fileno()).st_size
        self._stream: IO[bytes] = _gzip_file(self._raw, "rb") if compressed else self._raw

    def position(self) -> int:
        return self._raw.tell() if not self._raw.closed else self.total

    def close(self) -> None:
        self._stream.close()
        self._raw.close()


class JsonLinesReader(_ByteReader):
    """One JSON object a line; blank lines are skipped, anything else is a bad record."""

    def chunks(self, size: int) -> Iterator[list[Item]]:
        for chunk, _lines in self.chunks_with_lines(size):
            yield chunk

    def chunks_with_lines(self, size: int) -> Iterator[tuple[list[Item], list[bytes] | None]]:
        loads = orjson.loads
        line = 0
        chunk: list[Item] = []
        texts: list[bytes] = []
        while True:
            try:
                lines = self._stream.readlines(_READ_BLOCK)
            except _READ_ERRORS as error:
                raise _unreadable(self.path, error) from error
            if not lines:
                break
            for text in lines:
                line += 1
                if text.isspace():
                    continue
                try:
                    value = loads(text)
                except orjson.JSONDecodeError as error:
                    chunk.append((line, BadRecord(f"bad JSON: {error}")))
                else:
                    if isinstance(value, dict):
                        chunk.append((line, value))
                    else:
                        chunk.append((line, BadRecord("the line is JSON but not an object")))
                texts.append(text)
                if len(chunk) >= size:
                    yield chunk, texts
                    chunk = []
                    texts = []
        if chunk:
            yield chunk, texts


class CsvReader(_ByteReader):
    """A CSV file with a header line; UTF-8 (a byte-order mark is allowed).

    Values are strings; a row with more or fewer fields than the header is a bad record.
    """

    def __init__(self, path: Path, compressed: bool) -> None:
        super().__init__(path, compressed)
        csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
        self._text = io.TextIOWrapper(self._stream, encoding="utf-8-sig", newline="")
        self._rows = csv.reader(self._text)
        try:
            self.columns = next(self._rows, [])
        except _HEADER_READ_ERRORS as error:
            self.close()
            raise _unreadable(path, error) from error
        repeated = sorted({name for name in self.columns if self.columns.count(name) > 1})
        if repeated:
            self.close()
            raise InputUnreadableError(
                f"the CSV header of {str(path)!r} repeats the columns {repeated}; "
                "give every column a distinct name"
            )

    def chunks(self, size: int) -> Iterator[list[Item]]:
        columns = self.columns or []
        rows = self._rows
        chunk: list[Item] = []
        while True:
            line = rows.line_num + 1
            try:
                row = next(rows)
            except StopIteration:
                break
            except csv.Error as error:
                chunk.append((line, BadRecord(f"bad CSV: {error}")))
                continue
            except _TEXT_READ_ERRORS as error:
                raise _unreadable(self.path, error) from error
            if not row:
                continue
            if len(row) != len(columns):
                chunk.append(
                    (
                        line,
                        BadRecord(f"the row has {len(row)} fields; the header has {len(columns)}"),
                    )
                )
            else:
                chunk.append((line, dict(zip(columns, row, strict=True))))
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def close(self) -> None:
        self._text.close()
        super().close()


class ParquetReader(RecordReader):
    """A Parquet file, read one row group batch at a time."""

    unit = "records"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            self._file = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as error:
            raise _unreadable(path, error) from error
        self.schema = self._file.schema_arrow
        self.columns = list(self.schema.names)
        self.total = int(self._file.metadata.num_rows)
        self._done = 0

    def chunks(self, size: int) -> Iterator[list[Item]]:
        import pyarrow as pa

        batches = self._file.iter_batches(batch_size=size)
        while True:
            try:
                batch = next(batches, None)
            except (OSError, pa.ArrowException) as error:
                raise _unreadable(self.path, error) from error
            if batch is None:
                return
            first = self._done + 1
            rows: list[Record] = batch.to_pylist()
            self._done += len(rows)
            yield [(first + offset, row) for offset, row in enumerate(rows)]

    def position(self) -> int:
        return self._done

    def close(self) -> None:
        self._file.close()


def open_reader(path: Path, file_format: FileFormat | None = None) -> RecordReader:
    """Open a record file for streaming.

    Args:
        path: the file.
        file_format: its format; by default the one its name asks for.

    Raises:
        UnsupportedFormatError: the name asks for no supported format.
        InputUnreadableError: the file cannot be opened.
    """
    file_format = file_format or FileFormat.of(path)
    if file_format.kind == "jsonl":
        return JsonLinesReader(path, file_format.compressed)
    if file_format.kind == "csv":
        return CsvReader(path, file_format.compressed)
    return ParquetReader(path)


def _json_default(value: object) -> object:
    # Parquet hands out bytes and decimals, which JSON has no type for.
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class RecordWriter(ClosedOnExit):
    """Writes chunks of records to one file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @abstractmethod
    def write(self, records: Sequence[Record]) -> None:
        """Append records.

        Raises:
            OutputError: a record does not fit the output's format or schema.
        """

    @abstractmethod
    def close(self) -> None:
        """Flush and close the file (a Parquet file is only valid once closed)."""


def _open_bytes(path: Path, compressed: bool) -> tuple[IO[bytes], IO[bytes]]:
    raw: IO[bytes] = open(path, "wb")  # noqa: SIM115 -- closed by the writer's close()
    if compressed:
        return raw, _gzip_file(raw, "wb")
    return raw, raw


class JsonLinesWriter(RecordWriter):
    """One JSON object a line (UTF-8, gzipped for ``.gz``)."""

    def __init__(self, path: Path, compressed: bool) -> None:
        super().__init__(path)
        self._raw, self._stream = _open_bytes(path, compressed)

    def write(self, records: Sequence[Record]) -> None:
        self.write_lines(records)

    def write_lines(self, records: Sequence[Record | bytes]) -> None:
        """:meth:`write`, where a ``bytes`` item is a record already written as one JSON line
        (newline included), written as it is."""
        dumps = orjson.dumps
        option = orjson.OPT_APPEND_NEWLINE
        try:
            self._stream.write(
                b"".join(
                    record
                    if isinstance(record, bytes)
                    else dumps(record, default=_json_default, option=option)
                    for record in records
                )
            )
        except orjson.JSONEncodeError as error:
            raise OutputError(f"a record cannot be written as JSON: {error}") from error

    def close(self) -> None:
        self._stream.close()
        self._raw.close()


class CsvWriter(RecordWriter):
    """CSV with a header line. Lists and objects are written as JSON, ``None`` as empty.

    The columns are the given ones, or those of the first chunk in order of appearance;
    a later record's other fields are dropped with a warning.
    """

    def __init__(self, path: Path, compressed: bool, columns: Sequence[str] | None) -> None:
        super().__init__(path)
        self._raw, self._stream = _open_bytes(path, compressed)
        self._text = io.TextIOWrapper(self._stream, encoding="utf-8", newline="")
        self._rows = csv.writer(self._text)
        self._columns: list[str] | None = None if columns is None else list(columns)
        self._known: frozenset[str] = frozenset()
        self._warned = False
        if self._columns is not None:
            self._start(self._columns)

    def _start(self, columns: list[str]) -> None:
        self._columns = columns
        self._known = frozenset(columns)
        self._rows.writerow(columns)

    def write(self, records: Sequence[Record]) -> None:
        if not records:
            return
        if self._columns is None:
            self._start(list(dict.fromkeys(name for record in records for name in record)))
        columns = self._columns or []
        if not self._warned and any(not self._known.issuperset(record) for record in records):
            self._warned = True
            logger.warning(
                "some records have fields outside the CSV columns %s; those fields are dropped",
                columns,
            )
        self._rows.writerows(
            [_csv_value(record.get(name)) for name in columns] for record in records
        )

    def close(self) -> None:
        self._text.close()
        self._raw.close()


def _csv_value(value: object) -> object:
    if isinstance(value, dict | list):
        return orjson.dumps(value, default=_json_default).decode()
    return value


class ParquetWriter(RecordWriter):
    """Parquet with the given schema, or one inferred from the first chunk.

    ``string_fields`` are forced to strings (added or retyped), and inferred all-null
    columns become strings, so later chunks with values fit the schema.
    """

    def __init__(self, path: Path, schema: Any, string_fields: Sequence[str]) -> None:
        super().__init__(path)
        self._schema = schema
        self._string_fields = list(string_fields)
        self._writer: Any = None

    def _open(self, records: Sequence[Record]) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = self._schema
        if schema is None:
            inferred = pa.Table.from_pylist(list(records)).schema
            schema = pa.schema(
                [
                    field.with_type(pa.string()) if pa.types.is_null(field.type) else field
                    for field in inferred
                ]
            )
        for name in self._string_fields:
            index = schema.get_field_index(name)
            if index < 0:
                schema = schema.append(pa.field(name, pa.string()))
            elif not pa.types.is_string(schema.field(index).type):
                schema = schema.set(index, pa.field(name, pa.string()))
        # pandas metadata describes the input's columns, not these.
        self._schema = schema.remove_metadata()
        self._writer = pq.ParquetWriter(self.path, self._schema)
        return self._writer

    def write(self, records: Sequence[Record]) -> None:
        import pyarrow as pa

        if not records:
            return
        writer = self._writer or self._open(records)
        try:
            table = pa.Table.from_pylist(list(records), schema=self._schema)
        except (pa.ArrowException, TypeError, ValueError) as error:
            raise OutputError(
                f"records do not fit the Parquet schema {self._schema}: {error}; "
                "write .jsonl instead"
            ) from error
        writer.write_table(table)

    def close(self) -> None:
        if self._writer is None:
            self._open([])
        self._writer.close()


def open_writer(
    path: Path,
    file_format: FileFormat | None = None,
    *,
    columns: Sequence[str] | None = None,
    schema: Any = None,
    string_fields: Sequence[str] = (),
) -> RecordWriter:
    """Create (or truncate) a record file.

    Args:
        path: the file.
        file_format: its format; by default the one its name asks for.
        columns: CSV column order; by default the fields of the first chunk.
        schema: Parquet schema (``pyarrow.Schema``); by default inferred from the first chunk.
        string_fields: Parquet fields written as strings whatever the schema says.

    Raises:
        UnsupportedFormatError: the name asks for no supported format.
        OSError: the file cannot be created.
    """
    file_format = file_format or FileFormat.of(path)
    if file_format.kind == "jsonl":
        return JsonLinesWriter(path, file_format.compressed)
    if file_format.kind == "csv":
        return CsvWriter(path, file_format.compressed, columns)
    return ParquetWriter(path, schema, string_fields)
