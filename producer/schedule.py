"""The MOEX equities (TQBR) trading day in Moscow time, UTC+3 all year (no DST since 2014).

    09:50-10:00 opening_auction   (uncross at 10:00)
    10:00-18:40 trading           (main session)
    18:40-18:50 closing_auction   (uncross at 18:50)
    18:50-19:05 closed
    19:05-23:50 trading           (evening session: same phase name, by contract)
    23:50-09:50 closed

Every calendar day follows this schedule: weekends, holidays and the weekend/morning sessions
MOEX runs for some shares are not modelled.
"""

from __future__ import annotations

import time as _time
from datetime import date, datetime, time, timedelta, timezone

MSK = timezone(timedelta(hours=3), "MSK")
DAY_MS = 86_400_000
_MSK_OFFSET_MS = 3 * 3_600_000


def _ms(hh: int, mm: int) -> int:
    return (hh * 60 + mm) * 60_000


# (start, phase) in ms since Moscow midnight; each phase lasts until the next start.
SCHEDULE: tuple[tuple[int, str], ...] = (
    (_ms(9, 50), "opening_auction"),
    (_ms(10, 0), "trading"),
    (_ms(18, 40), "closing_auction"),
    (_ms(18, 50), "closed"),
    (_ms(19, 5), "trading"),
    (_ms(23, 50), "closed"),
)
MAIN_OPEN = _ms(10, 0)
MAIN_CLOSE = _ms(18, 40)
EVENING_OPEN = _ms(19, 5)
EVENING_CLOSE = _ms(23, 50)


def msk_ms_of_day(ts: int) -> int:
    return (ts + _MSK_OFFSET_MS) % DAY_MS


def phase_at(ts: int) -> str:
    """The phase in force at epoch-ms `ts` (a transition instant belongs to the new phase)."""
    of_day = msk_ms_of_day(ts)
    phase = SCHEDULE[-1][1]  # before 09:50 the previous evening's "closed" still holds
    for start, name in SCHEDULE:
        if of_day >= start:
            phase = name
        else:
            break
    return phase


def next_transition(ts: int) -> tuple[int, str]:
    """The first transition strictly after `ts`: (epoch ms, new phase)."""
    of_day = msk_ms_of_day(ts)
    midnight = ts - of_day
    for start, name in SCHEDULE:
        if start > of_day:
            return midnight + start, name
    first_start, first_phase = SCHEDULE[0]
    return midnight + DAY_MS + first_start, first_phase


def msk_datetime(ts: int) -> datetime:
    return datetime.fromtimestamp(ts / 1000, MSK)


def epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone")
    return int(moment.timestamp()) * 1000 + moment.microsecond // 1000


def msk_ms(day: date, clock: time) -> int:
    """Epoch ms of a Moscow wall-clock time on a Moscow date."""
    return epoch_ms(datetime.combine(day, clock, MSK))


def today_msk(now_ms: int) -> date:
    return msk_datetime(now_ms).date()


def wall_ms() -> int:
    """The wall clock, epoch ms: only for validation bounds and rejection times, never for
    event times of seeded synthetic data."""
    return _time.time_ns() // 1_000_000
