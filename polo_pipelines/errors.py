"""Errors that stop one partition and say which source, field and partition were at fault."""

from __future__ import annotations


class PoloInputError(ValueError):
    """Bad input from a billing source: nothing of the partition is written."""

    def __init__(self, message: str, *, source: str, field: str | None = None, partition: str | None = None):
        self.source = source
        self.field = field
        self.partition = partition
        where = [f"source {source}"]
        if field:
            where.append(f"field {field}")
        if partition:
            where.append(f"partition {partition}")
        super().__init__(f"{message} ({', '.join(where)})")

    def for_partition(self, partition: str) -> PoloInputError:
        """The same error, naming the partition once the caller knows it."""
        if self.partition:
            return self
        bare = str(self).rsplit(" (source ", 1)[0]
        return PoloInputError(bare, source=self.source, field=self.field, partition=partition)
