"""Reading a Prometheus text exposition in tests, through ``prometheus_client.parser``."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Scrape"]


@dataclass(frozen=True)
class Scrape:
    """One parsed ``/metrics`` answer: every sample, and each family's type."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    types: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        """Parse ``text`` (the parser rejects anything a Prometheus server would)."""
        samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            types[family.name] = family.type
            for s in family.samples:
                samples[(s.name, frozenset(s.labels.items()))] = s.value
        return cls(samples, types)

    def get(self, name: str, **labels: str) -> float | None:
        """The value of the sample ``name`` with exactly ``labels``; None if there is none."""
        return self.samples.get((name, frozenset(labels.items())))

    def total(self, name: str, **labels: str) -> float:
        """The sum of every ``name`` sample whose labels include ``labels``."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= ls)

    def label_values(self, name: str, label: str) -> set[str]:
        """Every value ``label`` takes on the samples called ``name``."""
        return {dict(ls)[label] for (n, ls) in self.samples if n == name and label in dict(ls)}
