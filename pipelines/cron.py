"""KFP cron expressions: six fields, seconds first (robfig/cron, what the KFP scheduler uses).

``second minute hour day-of-month month day-of-week``, e.g. ``0 0 3 * * *`` = every day at 03:00.
Fields take ``*``, numbers, ranges ``a-b``, lists ``a,b``, steps ``*/n`` / ``a-b/n`` / ``a/n``;
month and day-of-week also take names (``JAN``, ``MON``); ``?`` is ``*`` in the day fields.
Descriptors ``@yearly @annually @monthly @weekly @daily @midnight @hourly`` and ``@every 1h30m``
are accepted too. :func:`validate_cron` raises :class:`CronError` (a ``ValueError``) with a
clear message; :func:`explain_cron` says in plain English when it runs (times are in the KFP
scheduler's time zone, usually UTC).
"""

import re

FIELDS = ("second", "minute", "hour", "day of month", "month", "day of week")
RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
               "October", "November", "December")
DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
DESCRIPTORS = {
    "@yearly": "once a year, at midnight on 1 January",
    "@annually": "once a year, at midnight on 1 January",
    "@monthly": "once a month, at midnight on the first day",
    "@weekly": "once a week, at midnight between Saturday and Sunday",
    "@daily": "once a day, at midnight",
    "@midnight": "once a day, at midnight",
    "@hourly": "once an hour, at the start of the hour",
}
_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
EXAMPLE = "'0 0 3 * * *' (every day at 03:00)"


class CronError(ValueError):
    """A cron expression KFP would reject."""


def _value(tok: str, i: int) -> int:
    names = MONTHS if i == 4 else DAYS if i == 5 else ()
    if tok.upper() in names:
        return names.index(tok.upper()) + (1 if i == 4 else 0)
    if not tok.isdigit():
        raise CronError(f"{FIELDS[i]} field: {tok!r} is not a number"
                        + (f" or a name ({', '.join(names)})" if names else ""))
    v = int(tok)
    lo, hi = RANGES[i]
    if not lo <= v <= hi:
        raise CronError(f"{FIELDS[i]} {v} is out of range {lo}-{hi}")
    return v


def _check_field(text: str, i: int) -> None:
    if not text:
        raise CronError(f"{FIELDS[i]} field is empty")
    for part in text.split(","):
        if part == "":
            raise CronError(f"{FIELDS[i]} field {text!r}: empty list item")
        base, _, step = part.partition("/")
        if _:
            if not step.isdigit() or int(step) < 1:
                raise CronError(f"{FIELDS[i]} field {text!r}: step {step!r} must be a positive integer")
        if base in ("*", "?"):
            if base == "?" and i not in (3, 5):
                raise CronError(f"{FIELDS[i]} field: '?' is only allowed for day of month / day of week")
            continue
        lo_tok, dash, hi_tok = base.partition("-")
        lo = _value(lo_tok, i)
        if dash:
            hi = _value(hi_tok, i)
            if hi < lo:
                raise CronError(f"{FIELDS[i]} field {text!r}: range {lo}-{hi} runs backwards")


def validate_cron(expr: str) -> str:
    """Return the normalised expression (single spaces) or raise :class:`CronError`."""
    if not isinstance(expr, str) or not expr.strip():
        raise CronError(f"empty cron expression: expected 6 fields, seconds first, e.g. {EXAMPLE}")
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text in DESCRIPTORS:
            return text
        if text.startswith("@every "):
            dur = text[len("@every "):].strip()
            if _DURATION.match(dur):
                return text
            raise CronError(f"{text!r}: @every takes a Go duration such as 1h, 30m or 1h30m")
        raise CronError(f"unknown descriptor {text!r}: expected one of {', '.join(DESCRIPTORS)} or '@every 1h'")
    fields = text.split(" ")
    if len(fields) == 5:
        raise CronError(
            f"cron {text!r} has 5 fields, but KFP uses 6 fields with seconds first: "
            f"did you mean '0 {text}'? (e.g. {EXAMPLE})")
    if len(fields) != 6:
        raise CronError(f"cron {text!r} has {len(fields)} fields: expected 6 (second minute hour "
                        f"day-of-month month day-of-week), e.g. {EXAMPLE}")
    for i, f in enumerate(fields):
        _check_field(f, i)
    return text


# ----- plain English -----------------------------------------------------------------------------
def _name(v: int, i: int) -> str:
    if i == 4:
        return MONTH_NAMES[v - 1]
    if i == 5:
        return DAY_NAMES[v]
    return str(v)


def _part(part: str, i: int) -> str:
    unit = ("second", "minute", "hour", "day", "month", "day")[i]
    base, slash, step = part.partition("/")
    if slash:
        lo, dash, hi = base.partition("-")
        start = "" if base in ("*", "?") else f" from {lo}" + (f" through {hi}" if dash else "")
        n = int(step)
        return f"every {unit}" + start if n == 1 else f"every {n} {unit}s" + start
    if base in ("*", "?"):
        return f"every {unit}"
    lo, dash, hi = base.partition("-")
    if dash:
        return f"{_name(_value(lo, i), i)} through {_name(_value(hi, i), i)}"
    return _name(_value(lo, i), i)


def _field_text(text: str, i: int) -> str:
    parts = [_part(p, i) for p in text.split(",")]
    label = ("second", "minute", "hour", "day", "month", "")[i]
    if len(parts) == 1 and parts[0].startswith("every"):
        return parts[0]
    joined = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
    return f"{label} {joined}".strip() if i < 4 else joined


def explain_cron(expr: str) -> str:
    """``'0 0 3 * * *'`` -> ``'at 03:00:00, every day'`` (validated first)."""
    text = validate_cron(expr)
    if text.startswith("@"):
        if text in DESCRIPTORS:
            return DESCRIPTORS[text]
        return f"every {text[len('@every '):]} (counted from when the recurring run starts)"
    sec, minute, hour, dom, month, dow = text.split(" ")
    if all(f.isdigit() for f in (sec, minute, hour)):
        when = f"at {int(hour):02d}:{int(minute):02d}:{int(sec):02d}"
    else:
        when = "at " + ", ".join(_field_text(f, i) for i, f in enumerate((sec, minute, hour)))
    days = []
    dom_any, dow_any = dom in ("*", "?"), dow in ("*", "?")
    if dom_any and dow_any:
        days.append("every day")
    else:
        if not dom_any:
            days.append(f"on {_field_text(dom, 3)} of the month")
        if not dow_any:
            days.append(("or " if days else "") + f"on {_field_text(dow, 5)}")
    if month not in ("*", "?"):
        days.append(f"in {_field_text(month, 4)}")
    return f"{when}, {' '.join(days)}"
