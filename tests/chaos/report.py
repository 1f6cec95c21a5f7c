"""The one table a chaos run prints, and its verdict.

The run fails on any loss, doubling, unequal board, event missing from Kafka, broken "not recorded"
promise, 500, process that exited without being killed, or when the system did not converge. A 503
while a store restarts is the API's documented "not recorded, send it again" and is counted, not
failed; so is `outcome_unknown`, whose answers the audit follows into PostgreSQL.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tests.chaos.audit import Findings
from tests.chaos.converge import State
from tests.chaos.faults import KINDS, Crash
from tests.chaos.ledger import Ledger


@dataclass
class Summary:
    load_s: float
    peak_rate: float
    faults: Counter
    crashes: list[Crash]
    converge_s: float | None
    state: State
    findings: Findings
    ledger: Ledger
    failovers: list = field(default_factory=list)  # the cluster's PostgresFailover, one per `postgres` fault

    def failures(self) -> list[str]:
        f, errors = self.findings, self._errors()
        checks = {
            "lost answers": len(f.lost), "doubled answers": f.doubled, "uncounted answers": f.uncounted,
            "answers without their event": f.answers_without_event,
            "boards unequal": self.state.sessions - self.state.equal,
            "events missing from Kafka": f.missing_from_kafka,
            "events on Kafka not in PostgreSQL": f.not_in_table, "dead letters": f.dead_letters,
            "refused answers recorded": f.refused_but_recorded,
            "already_answered with the choice sent": f.conflicts, "500s": errors["500"],
            "5xx other than 503 and outcome_unknown": errors["other"],
            "processes that exited by themselves": len(self.crashes),
            "ops verify non-zero": int(f.verify_exit != 0), "not converged": int(self.converge_s is None),
            "failovers republishing beyond their bound": sum(not x.within_bound() for x in self.failovers),
        }
        return [f"{name}: {n}" for name, n in checks.items() if n]

    def _errors(self) -> Counter:
        out: Counter = Counter()
        for (status, code), n in self.ledger.server_errors.items():
            if status == 500:
                out["500"] += n
            elif status == 503:
                out["503"] += n
            elif status == 504 and code == "outcome_unknown":
                out["504u"] += n
            else:
                out["other"] += n
        return out

    def rows(self) -> list[tuple[str, str]]:
        f, s, errors, ledger = self.findings, self.state, self._errors(), self.ledger
        rate = f.acknowledged / max(self.load_s, 1e-9)
        acknowledged = (f"{f.acknowledged:,} ({f.acknowledged - f.replayed:,} / {f.replayed:,}) "
                        f"in {self.load_s:.0f} s: {rate:,.0f}/s, peak {self.peak_rate:,.0f}/s over 10 s")
        boards = (f"{s.equal} of {s.sessions} ({len(s.read_to_rebuild)} rebuilt by a read); "
                  f"ops verify exit {f.verify_exit}")
        kafka = (f"{f.events - f.missing_from_kafka:,} of {f.events:,} "
                 f"({f.missing_from_kafka} / {f.not_in_table} / {f.published_twice:,})")
        unknown = f"{f.unknown_answers:,} ({f.unknown_recorded:,}); {errors['504u']:,} responses"
        refused = ", ".join(f"{code} {n:,}" for code, n in f.refused.most_common()) or "0"
        kinds = (*KINDS, "redis_wipe", *(("postgres",) if self.failovers else ()))
        faults = ", ".join(f"{k} {self.faults[k]}" for k in kinds)
        crashes = ", ".join(f"{c.name} at {c.at_s:.0f} s (exit {c.code})" for c in self.crashes) or "0"
        failures = self.failures()
        return [
            ("acknowledged answers (201 / 200 replayed)", acknowledged),
            ("lost (acknowledged, not in PostgreSQL)", f"{len(f.lost):,}"),
            ("doubled (rows / events / score <> sum of points)",
             f"{f.doubled:,} ({f.double_rows} / {f.double_events} / {f.scores_off})"),
            ("uncounted answers / answers without event", f"{f.uncounted} / {f.answers_without_event}"),
            ("boards equal to PostgreSQL", boards),
            ("events in Kafka (missing / unknown / sent twice)", kafka),
            ("dead letters", f"{f.dead_letters}"),
            ("500 / other 5xx (not 503, not outcome_unknown)", f"{errors['500']} / {errors['other']}"),
            ("503 (not recorded, sent again)", f"{errors['503']:,}{_by_what(ledger.by_what(503))}"),
            ("requests without a response",
             f"{sum(ledger.network_errors.values()):,}{_by_what(ledger.network_errors)}"),
            ("outcome_unknown answers (in fact recorded)", unknown),
            ("refused (question_closed...) but recorded", f"{f.refused_but_recorded}"),
            ("refused (definitive 4xx) / gave up / conflict", f"{refused} / {f.gave_up} / {f.conflicts}"),
            ("faults injected", f"{sum(self.faults.values())}: {faults}"),
            ("processes that exited by themselves (restarted)", crashes),
            *((f"PostgreSQL failover {i}", x.row()) for i, x in enumerate(self.failovers, start=1)),
            ("time to converge",
             f"{self.converge_s:.1f} s" if self.converge_s is not None else "did not converge"),
            ("verdict", "FAIL: " + "; ".join(failures) if failures else "PASS"),
        ]


def _by_what(counts: Counter) -> str:
    return f" ({', '.join(f'{what} {n:,}' for what, n in counts.most_common())})" if counts else ""


def table(rows: list[tuple[str, str]]) -> str:
    left = max(len(k) for k, _ in rows)
    right = max(len(v) for _, v in rows)
    rule = f"+-{'-' * left}-+-{'-' * right}-+"
    lines = [rule] + [f"| {k:<{left}} | {v:<{right}} |" for k, v in rows] + [rule]
    return "\n".join(lines)
