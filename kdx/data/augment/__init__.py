"""Rows for the teacher to label, chosen by the `augment` config group (`augment=none|munge|spunge|rows`): each
augmenter a small class in its own module behind the `Augmenter` interface, built from its YAML by `_target_`.
`generate_rows` applies one to a seed's training rows."""

from kdx.data.augment.base import Augmenter, Columns, GeneratedRows, NoAugment, generate_rows

__all__ = ["Augmenter", "Columns", "GeneratedRows", "NoAugment", "generate_rows"]
