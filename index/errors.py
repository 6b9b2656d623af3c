"""The engine's exceptions: one root, :class:`SamestoryError`, and one subclass per cause.

Every message says what is wrong and how to fix it; ``service`` maps each class to an
HTTP status in one place, so new subclasses must be added there too.
"""

from __future__ import annotations


class SamestoryError(Exception):
    """Root of every error the engine raises on purpose."""


class InvalidArticleError(SamestoryError, ValueError):
    """The article cannot be accepted as given (a field is missing, empty or malformed)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class EmptyTextError(InvalidArticleError):
    """The text is empty or only whitespace."""


class BoilerplateOnlyError(InvalidArticleError):
    """After cleaning, nothing of the text is left: it was only navigation, tags or lists."""

    def __init__(
        self, message: str, *, field: str | None = None, article_id: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.article_id = article_id


class InvalidDateError(InvalidArticleError):
    """``published_at`` is not an RFC 3339 timestamp."""


class ArticleNotFoundError(SamestoryError, KeyError):
    """No article with this id is stored."""

    def __init__(self, article_id: str) -> None:
        super().__init__(f"no article with id {article_id!r} is stored")
        self.article_id = article_id

    def __str__(self) -> str:
        return str(self.args[0])


class StoryNotFoundError(SamestoryError, KeyError):
    """No story with this id exists."""

    def __init__(self, story_id: str) -> None:
        super().__init__(f"no story with id {story_id!r} exists")
        self.story_id = story_id

    def __str__(self) -> str:
        return str(self.args[0])


class ConflictError(SamestoryError):
    """The id is already stored, or repeated in the same batch, with a different text."""

    def __init__(self, article_id: str, *, in_batch: bool = False) -> None:
        super().__init__(
            f"article {article_id!r} appears twice in this batch with different texts; "
            "ids are immutable: send each text under its own id"
            if in_batch
            else f"article {article_id!r} is already stored with a different text; "
            "ids are immutable: delete it first or send the new text under a new id"
        )
        self.article_id = article_id


class ParameterError(SamestoryError, ValueError):
    """An engine parameter is out of range."""


class IndexMismatchError(SamestoryError):
    """A snapshot or store was built with other parameters than the ones given."""


class ModelError(SamestoryError):
    """The embedding model cannot be found, built or loaded."""


class StoreClosedError(SamestoryError):
    """The engine or its store was used after ``close()``."""


class StorageFullError(SamestoryError):
    """The record's disk (or SQLite's page limit) is full: the write was rolled back."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"the record's storage is full ({reason}): nothing of this request was stored; "
            "free disk space where the data directory lives, then send it again"
        )


class DataDirectoryInUseError(SamestoryError):
    """Another engine (another ``samestory serve`` or ``dedup --store``) has the directory."""

    def __init__(self, data_dir: str, holder: str) -> None:
        super().__init__(
            f"data directory {data_dir} is in use by another samestory engine ({holder}): "
            "one process writes a data directory at a time, or each would miss the other's "
            "articles; stop it first, or use another directory"
        )
