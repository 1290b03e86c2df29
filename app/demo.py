"""A synthetic CoCM clinic for demos (``cocm demo``): patients, PHQ-9/GAD-7 responses, care-manager
time, consents, initiating visits and a few discharges, as an EHR would send them.

Pure: :func:`clinic` turns (seed, today, clinic time zone, size) into FHIR R4 resource dicts, one
transaction Bundle per patient, and the same inputs always give the same Bundles. Every patient has
its own random stream (seeded with the seed and its number), so patient 17 is the same person
whether the clinic has 20 or 200 patients. :func:`load` sends the Bundles through
``app.services.bundles.process_bundle``, the code path of ``POST /fhir``, so validation, scoring and
facts are those of the API.

Choices:

- **Dates** are relative to ``today`` in the clinic time zone: enrolments are spread over the
  ``months`` before today (so the registry has new, long-running and finished patients and the
  current month is open), contacts fall on weekdays in office hours, nothing is dated after now.
- **Idempotent.** Every resource carries an identifier (system ``urn:cocm-demo:<kind>``, value
  ``<seed>-<patient>[-<what>-<n>]``); each patient is one transaction Bundle, so a patient is stored
  whole or not at all, and :func:`load` skips a patient whose identifier is stored already: loading
  twice (or on a later day, when the dates would differ) writes nothing new. Were a Bundle sent
  twice anyway, the API's identifier idempotency answers the stored resources (same content).
  A different seed is a different clinic, loaded alongside.
- **Realism.** Trajectories ``improve`` (to remission in 8-16 weeks), ``partial`` (stalls around
  60 % of baseline), ``stall``, ``relapse`` (improves, then climbs back), ``disengaged`` (no contact
  or score in the last 5-9 weeks) and ``discharged`` (improves, EpisodeOfCare ``finished``); a few
  patients are only screened (a PHQ-9, no CoCM time: ``not_enrolled``). About one in eight answers
  item 9 above 0 while severe. Monthly counted minutes are drawn around targets that land in every
  billing band (under 16, G2214, 99492/99493, one or more 99494); a few outreach attempts are
  cancelled (stored, not counted) and some months include the psychiatric consultant's own time
  (not counted by default). A few patients have no consent or no initiating visit on file, so
  the billing blockers show up too.
- **Diagnoses.** Nearly every enrolled patient has a depression diagnosis on the problem list
  (ICD-10-CM, one in five as SNOMED CT), dated up to three months before enrolment; about one in
  sixteen also has an exclusion (bipolar II, borderline personality disorder, palliative care), so
  the quality measures' exclusions show up. Drawn from a stream of their own, so adding them left
  the rest of each patient unchanged.
- **Alumni.** ``alumni`` more patients were treated 13 to 26 months ago: an episode of 5 to 9
  months ending in discharge and, for most, a PHQ-9 at the twelve-month check (Bauer 2015), so the
  twelve-month remission and 4-8-month response measures have a denominator this year.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from app.billing.codes import ACTIVITY_SYSTEM, CPT, HCPCS
from app.domain import Actor
from app.measures.instruments import ANSWERS, DIFFICULTY_ANSWERS, GAD7, LOINC_SYSTEM, PHQ9, Instrument
from app.quality.valuesets import ICD10_CM, SNOMED_CT
from app.services.bundles import process_bundle
from app.services.resources import ResourceService
from app.settings import DEFAULT_TENANT, Settings

ID_SYSTEM = "urn:cocm-demo"
UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
DEMO_ACTOR = Actor("cli:demo")
UUID_NAMESPACE = uuid.UUID("1f1f0b6e-5c0a-4c43-9a53-3c0c2f6d7a11")  # fullUrls: urn:uuid:<uuid5>

TRAJECTORIES: tuple[tuple[str, int], ...] = (
    ("improve", 34),
    ("partial", 14),
    ("stall", 16),
    ("relapse", 10),
    ("disengaged", 9),
    ("discharged", 9),
    ("screened", 8),
)
# Target counted minutes per month, by intensity: chosen so months fall in every billing band.
MONTH_TARGETS: dict[str, tuple[int, int]] = {"light": (8, 40), "standard": (30, 85), "heavy": (80, 160)}
INTENSITIES: tuple[tuple[str, int], ...] = (("light", 25), ("standard", 50), ("heavy", 25))
VISIT_CODES: tuple[tuple[str, str], ...] = (
    (CPT, "99213"),
    (CPT, "99214"),
    (CPT, "99214"),
    (CPT, "99215"),
    (CPT, "99204"),
    (HCPCS, "G0439"),
)
GIVEN = (
    "Ana", "Ben", "Carla", "David", "Elena", "Farah", "George", "Hana", "Ivan", "Julia", "Kwame",
    "Lena", "Marco", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Samuel", "Tara", "Umar", "Vera",
    "Wei", "Ximena", "Yusuf", "Zoe", "Aiden", "Bea", "Chen", "Dalia",
)  # fmt: skip
FAMILY = (
    "Rivera", "Nguyen", "Okafor", "Smith", "Kowalski", "Haddad", "Johansson", "Patel", "Garcia",
    "Kim", "Mensah", "Novak", "Rossi", "Tanaka", "Walker", "Yilmaz", "Dubois", "Ortiz", "Ibrahim",
    "Larsen", "Moreau", "Singh", "Costa", "Ahmed", "Brown", "Fischer", "Lopez", "Murphy",
)  # fmt: skip
DEPRESSION_CODES = (
    ("F32.1", "Major depressive disorder, single episode, moderate"),
    ("F32.2", "Major depressive disorder, single episode, severe without psychotic features"),
    ("F32.A", "Depression, unspecified"),
    ("F33.0", "Major depressive disorder, recurrent, mild"),
    ("F33.1", "Major depressive disorder, recurrent, moderate"),
    ("F34.1", "Dysthymic disorder"),
)
EXCLUSION_CODES = (
    ("F31.81", "Bipolar II disorder"),
    ("F60.3", "Borderline personality disorder"),
    ("Z51.5", "Encounter for palliative care"),
)
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CARE_MANAGERS = (("demo-bhcm-1", "Jordan Lee, LCSW"), ("demo-bhcm-2", "Sam Ortega, RN"))
CONSULTANT = ("demo-psych-1", "Dr. Morgan Hale, MD")


@dataclass(frozen=True)
class Event:
    """One thing that happened to a patient, before it becomes a resource."""

    kind: str  # "time", "phq9", "gad7"
    day: date
    minutes: int = 0
    activity: str = ""
    status: str = "finished"
    score: int = 0
    item9: int = 0


def clinic(
    today: date, zone: ZoneInfo, *, patients: int = 200, months: int = 6, seed: int = 7, alumni: int = 0
) -> list[dict[str, Any]]:
    """The clinic as transaction Bundles, one per patient (Patient first, then everything else);
    the ``alumni`` (treated more than a year ago) after the current patients."""
    return [patient_bundle(n, today, zone, months=months, seed=seed) for n in range(1, patients + 1)] + [
        alumnus_bundle(n, today, zone, seed=seed) for n in range(1, alumni + 1)
    ]


def alumnus_bundle(n: int, today: date, zone: ZoneInfo, *, seed: int = 7) -> dict[str, Any]:
    """Alumnus number ``n``: treated 13 to 26 months before ``today`` (module docstring)."""
    rng = random.Random(f"cocm-demo:{seed}:alumnus:{n}")  # noqa: S311 (synthetic data, not security)
    return _Generator(rng, f"{seed}-a{n:04d}", today, zone, 6).alumnus()


def patient_bundle(n: int, today: date, zone: ZoneInfo, *, months: int = 6, seed: int = 7) -> dict[str, Any]:
    """Patient number ``n`` of the clinic and everything about them, as a transaction Bundle."""
    rng = random.Random(f"cocm-demo:{seed}:{n}")  # noqa: S311 (synthetic data, not security)
    key = f"{seed}-{n:04d}"
    gen = _Generator(rng, key, today, zone, months)
    return gen.bundle()


class _Generator:
    def __init__(self, rng: random.Random, key: str, today: date, zone: ZoneInfo, months: int) -> None:
        self.rng = rng
        self.key = key
        self.today = today
        self.zone = zone
        self.window = max(14, round(months * 30.44))
        self.entries: list[dict[str, Any]] = []
        self.patient_url = self._full_url("patient")
        self.dx_rng = random.Random(f"cocm-demo:{key}:diagnoses")  # noqa: S311 (synthetic data)

    # ------------------------------------------------------------ helpers
    def _full_url(self, what: str) -> str:
        return f"urn:uuid:{uuid.uuid5(UUID_NAMESPACE, f'{self.key}:{what}')}"

    def _identifier(self, kind: str, suffix: str = "") -> dict[str, str]:
        return {"system": f"{ID_SYSTEM}:{kind}", "value": self.key + (f"-{suffix}" if suffix else "")}

    def _add(self, resource: dict[str, Any], kind: str, suffix: str = "") -> None:
        ident = self._identifier(kind, suffix)
        resource["identifier"] = ident if resource["resourceType"] == "QuestionnaireResponse" else [ident]
        rtype = resource["resourceType"]
        self.entries.append(
            {
                "fullUrl": self._full_url(f"{kind}:{suffix}"),
                "resource": resource,
                "request": {"method": "POST", "url": rtype},
            }
        )

    def _at(self, day: date, earliest: int = 8, latest: int = 16) -> datetime:
        clock = time(self.rng.randint(earliest, latest), self.rng.choice((0, 15, 30, 45)))
        return datetime.combine(day, clock, self.zone)

    def _weekday(self, day: date) -> date:
        while day.weekday() >= 5:
            day -= timedelta(days=1)
        return day

    def _subject(self) -> dict[str, str]:
        return {"reference": self.patient_url}

    # ------------------------------------------------------------ the patient
    def bundle(self) -> dict[str, Any]:
        rng = self.rng
        trajectory = _weighted(rng, TRAJECTORIES)
        self._patient()
        start = self._weekday(self.today - timedelta(days=rng.randint(1, self.window - 1)))
        if trajectory in {"discharged", "relapse"} and (self.today - start).days < 120:
            start = self._weekday(self.today - timedelta(days=rng.randint(120, max(121, self.window - 1))))
        if trajectory == "disengaged" and (self.today - start).days < 90:
            start = self._weekday(self.today - timedelta(days=rng.randint(90, max(91, self.window - 1))))
        if trajectory != "screened" or self.dx_rng.random() < 0.5:
            self._diagnoses(start)
        if trajectory == "screened":
            baseline = rng.randint(5, 16)
            self._questionnaire(PHQ9, Event("phq9", start, score=baseline, item9=0), "phq9-1")
            return self._as_bundle()
        if rng.random() > 0.05:
            self._consent(start - timedelta(days=rng.randint(0, 3)))
        if rng.random() > 0.06:
            self._visit(self._weekday(start - timedelta(days=rng.randint(0, 28))))
        end = self.today - timedelta(days=1)  # nothing today: the data does not depend on the hour
        if trajectory == "discharged":
            end = self._weekday(
                min(self.today - timedelta(days=7), start + timedelta(weeks=rng.randint(14, 18)))
            )
        if trajectory == "disengaged":
            end = self._weekday(self.today - timedelta(days=rng.randint(36, 63)))
        self._emit(self._scores(trajectory, start, end) + self._time(start, end))
        if trajectory == "discharged":
            self._episode(start, end, "finished")
        elif rng.random() < 0.25:
            self._episode(start, None, "active")
        return self._as_bundle()

    def alumnus(self) -> dict[str, Any]:
        """A patient treated 13 to 26 months ago, discharged after 5 to 9 months, most with a
        PHQ-9 at the twelve-month check."""
        rng = self.rng
        trajectory = _weighted(rng, (("improve", 50), ("partial", 25), ("stall", 25)))
        self._patient()
        start = self._weekday(self.today - timedelta(days=rng.randint(395, 790)))
        self._diagnoses(start)
        self._consent(start - timedelta(days=rng.randint(0, 3)))
        self._visit(self._weekday(start - timedelta(days=rng.randint(0, 28))))
        end = self._weekday(start + timedelta(days=rng.randint(150, 280)))
        events = self._scores(trajectory, start, end)
        check = self._weekday(start + timedelta(days=365 + rng.randint(-45, 45)))
        if rng.random() < 0.75 and check < self.today:
            low, high = {"improve": (0, 7), "partial": (4, 13), "stall": (9, 22)}[trajectory]
            events.append(Event("phq9", check, score=rng.randint(low, high)))
        self._emit(events + self._time(start, end))
        self._episode(start, end, "finished")
        return self._as_bundle()

    def _emit(self, events: list[Event]) -> None:
        """The events as resources, in date order."""
        events.sort(key=lambda e: (e.day, e.kind))
        counters: dict[str, int] = {}
        for event in events:
            counters[event.kind] = counters.get(event.kind, 0) + 1
            suffix = f"{event.kind}-{counters[event.kind]}"
            if event.kind == "time":
                self._encounter(event, suffix)
            else:
                self._questionnaire(PHQ9 if event.kind == "phq9" else GAD7, event, suffix)

    def _diagnoses(self, start: date) -> None:
        """A depression diagnosis, and now and then an exclusion (module docstring)."""
        rng = self.dx_rng
        if rng.random() < 0.95:
            code, display = rng.choice(DEPRESSION_CODES)
            coding = (
                {"system": SNOMED_CT, "code": "370143000", "display": "Major depressive disorder"}
                if rng.random() < 0.2
                else {"system": ICD10_CM, "code": code, "display": display}
            )
            self._condition(coding, start - timedelta(days=rng.randint(0, 90)), "depression")
        if rng.random() < 0.0625:
            code, display = rng.choice(EXCLUSION_CODES)
            onset = start + timedelta(days=rng.randint(-400, 200))
            if onset < self.today:
                self._condition({"system": ICD10_CM, "code": code, "display": display}, onset, "exclusion")

    def _condition(self, coding: dict[str, str], onset: date, suffix: str) -> None:
        self._add(
            {
                "resourceType": "Condition",
                "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
                "verificationStatus": {"coding": [{"system": CONDITION_VERIFICATION, "code": "confirmed"}]},
                "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "problem-list-item"}]}],
                "code": {"coding": [coding]},
                "subject": self._subject(),
                "onsetDateTime": onset.isoformat(),
                "recordedDate": onset.isoformat(),
            },
            "condition",
            suffix,
        )

    def _as_bundle(self) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}

    def _patient(self) -> None:
        rng = self.rng
        gender = rng.choice(("female", "female", "male", "male", "other"))
        age = rng.randint(19, 84)
        born = self.today - timedelta(days=age * 365 + rng.randint(0, 364))
        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "active": True,
            "name": [{"use": "official", "family": rng.choice(FAMILY), "given": [rng.choice(GIVEN)]}],
            "gender": gender,
            "birthDate": born.isoformat(),
        }
        ident = self._identifier("patient")
        resource["identifier"] = [
            {
                "use": "usual",
                "type": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]
                },
                **ident,
            }
        ]
        self.entries.append(
            {
                "fullUrl": self.patient_url,
                "resource": resource,
                "request": {"method": "POST", "url": "Patient"},
            }
        )

    def _consent(self, day: date) -> None:
        self._add(
            {
                "resourceType": "Consent",
                "status": "active",
                "scope": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}
                    ]
                },
                "category": [
                    {"coding": [{"system": LOINC_SYSTEM, "code": "59284-0", "display": "Patient Consent"}]}
                ],
                "patient": self._subject(),
                "dateTime": day.isoformat(),
            },
            "consent",
        )

    def _visit(self, day: date) -> None:
        system, code = self.rng.choice(VISIT_CODES)
        begin = self._at(day)
        self._add(
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"system": ACT_CODE, "code": "AMB"},
                "type": [{"coding": [{"system": system, "code": code}]}],
                "subject": self._subject(),
                "period": {"start": begin.isoformat(), "end": (begin + timedelta(minutes=25)).isoformat()},
                "reasonCode": [{"text": "depressive symptoms; collaborative care offered"}],
            },
            "encounter",
            "visit",
        )

    def _episode(self, start: date, end: date | None, status: str) -> None:
        period = {"start": start.isoformat(), **({"end": end.isoformat()} if end else {})}
        self._add(
            {
                "resourceType": "EpisodeOfCare",
                "status": status,
                "type": [{"coding": [{"system": ACTIVITY_SYSTEM, "code": "cocm"}]}],
                "patient": self._subject(),
                "period": period,
            },
            "episode-of-care",
        )

    # ------------------------------------------------------------ scores
    def _scores(self, trajectory: str, start: date, end: date) -> list[Event]:
        rng = self.rng
        baseline = rng.randint(10, 24)
        risk = rng.random() < 0.125
        turn = rng.randint(8, 12)  # weeks: relapse turning point
        speed = rng.randint(8, 16)  # weeks to remission (improve)
        with_gad = rng.random() < 0.4
        gad_baseline = rng.randint(8, 19)
        events: list[Event] = []
        day = start
        while day <= end:
            weeks = (day - start).days / 7
            if trajectory in {"improve", "discharged"}:
                factor = max(0.12, 1 - 0.88 * weeks / speed)
            elif trajectory == "partial":
                factor = max(0.62, 1 - 0.4 * weeks / 8)
            elif trajectory == "relapse":
                factor = (
                    max(0.3, 1 - 0.7 * weeks / turn)
                    if weeks <= turn
                    else min(0.9, 0.3 + 0.1 * (weeks - turn))
                )
            elif trajectory == "disengaged":
                factor = max(0.7, 1 - 0.05 * weeks)
            else:  # stall
                factor = 1.0
            score = _clamp(round(baseline * factor + rng.randint(-2, 2)), 0, 27)
            item9 = (1 if score < 20 else 2) if risk and score >= 12 else 0
            events.append(Event("phq9", day, score=score, item9=item9))
            if with_gad and (day == start or rng.random() < 0.6):
                events.append(
                    Event("gad7", day, score=_clamp(round(gad_baseline * factor) + rng.randint(-1, 1), 0, 21))
                )
            day = self._weekday(day + timedelta(days=rng.randint(14, 28)))
            if day <= events[-1].day:
                day = events[-1].day + timedelta(days=7)
        return events

    def _questionnaire(self, instrument: Instrument, event: Event, suffix: str) -> None:
        answers = _split(
            self.rng, event.score, len(instrument.items), event.item9 if instrument is PHQ9 else None
        )
        by_score = {a.score: a for a in ANSWERS.values() if a.code != "LA18938-3"}
        items: list[dict[str, Any]] = [
            {
                "linkId": item.loinc,
                "text": item.text,
                "answer": [
                    {
                        "valueCoding": {
                            "system": LOINC_SYSTEM,
                            "code": by_score[value].code,
                            "display": by_score[value].text,
                        }
                    }
                ],
            }
            for item, value in zip(instrument.items, answers, strict=True)
        ]
        if instrument is PHQ9:
            difficulty = list(DIFFICULTY_ANSWERS.values())[min(3, event.score // 7)]
            items.append(
                {
                    "linkId": instrument.unscored[0].loinc,
                    "text": instrument.unscored[0].text,
                    "answer": [
                        {
                            "valueCoding": {
                                "system": LOINC_SYSTEM,
                                "code": difficulty.code,
                                "display": difficulty.text,
                            }
                        }
                    ],
                }
            )
        self._add(
            {
                "resourceType": "QuestionnaireResponse",
                "questionnaire": f"http://loinc.org/q/{instrument.panel}",
                "status": "completed",
                "subject": self._subject(),
                "authored": self._at(event.day).isoformat(),
                "item": items,
            },
            "questionnaire-response",
            suffix,
        )

    # ------------------------------------------------------------ time
    def _time(self, start: date, end: date) -> list[Event]:
        rng = self.rng
        intensity = _weighted(rng, INTENSITIES)
        events = [Event("time", start, minutes=rng.randint(35, 60), activity="initial-assessment")]
        month_start = start.replace(day=1)
        while month_start <= end:
            following = (month_start + timedelta(days=32)).replace(day=1)
            first = max(month_start, start + timedelta(days=1))
            last = min(following - timedelta(days=1), end)
            if first <= last:
                events += self._month(first, last, intensity, first == start + timedelta(days=1))
            month_start = following
        return events

    def _month(self, first: date, last: date, intensity: str, initial: bool) -> list[Event]:
        rng = self.rng
        low, high = MONTH_TARGETS[intensity]
        span = (last - first).days + 1
        if intensity == "light" and not initial and rng.random() < 0.2:  # a quiet month: one short call
            on = self._weekday(first + timedelta(days=rng.randint(0, span - 1)))
            return [Event("time", max(first, on), minutes=rng.randint(5, 14), activity="outreach")]
        target = round(rng.randint(low, high) * min(1.0, span / 30)) - (45 if initial else 0)
        events: list[Event] = []
        total = 0

        def day() -> date:
            return self._weekday(first + timedelta(days=rng.randint(0, span - 1))) if span > 0 else first

        while total < target:
            activity = _weighted(
                rng,
                (
                    ("follow-up", 45),
                    ("outreach", 15),
                    ("care-coordination", 15),
                    ("brief-intervention", 12),
                    ("case-review", 10),
                    ("relapse-prevention", 3),
                ),
            )
            minutes = {
                "follow-up": rng.randint(12, 30),
                "outreach": rng.randint(4, 12),
                "care-coordination": rng.randint(8, 20),
                "brief-intervention": rng.randint(20, 40),
                "case-review": rng.randint(5, 12),
                "relapse-prevention": rng.randint(15, 30),
            }[activity]
            on = max(first, day())
            if activity == "outreach" and rng.random() < 0.12:
                events.append(Event("time", on, minutes=minutes, activity=activity, status="cancelled"))
                continue
            events.append(Event("time", on, minutes=minutes, activity=activity))
            total += minutes
        if rng.random() < 0.3 and span >= 7:
            events.append(
                Event(
                    "time",
                    max(first, day()),
                    minutes=rng.randint(15, 30),
                    activity="psychiatric-consultation",
                )
            )
        return [e for e in events if e.day <= last]

    def _encounter(self, event: Event, suffix: str) -> None:
        consult = event.activity == "psychiatric-consultation"
        who = CONSULTANT if consult else self.rng.choice(CARE_MANAGERS)
        remote = event.activity in {"outreach", "follow-up"} and self.rng.random() < 0.6
        begin = self._at(event.day)
        resource: dict[str, Any] = {
            "resourceType": "Encounter",
            "status": event.status,
            "class": {"system": ACT_CODE, "code": "VR" if remote else "AMB"},
            "type": [{"coding": [{"system": ACTIVITY_SYSTEM, "code": event.activity}]}],
            "subject": self._subject(),
            "participant": [{"individual": {"reference": f"Practitioner/{who[0]}", "display": who[1]}}],
            "period": {"start": begin.isoformat()},
            "length": {"value": event.minutes, "unit": "min", "system": UCUM, "code": "min"},
        }
        if event.status == "finished":
            resource["period"]["end"] = (begin + timedelta(minutes=event.minutes)).isoformat()
        self._add(resource, "encounter", suffix)


def _weighted(rng: random.Random, choices: Sequence[tuple[str, int]]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _split(rng: random.Random, total: int, count: int, last: int | None) -> list[int]:
    """``count`` item scores 0-3 summing to ``total``; the last item fixed to ``last`` when given."""
    scores = [0] * count
    if last is not None:
        scores[-1] = min(3, last, total)
    free = list(range(count - 1 if last is not None else count))
    remaining = min(total - sum(scores), 3 * len(free))
    while remaining > 0:
        i = rng.choice([j for j in free if scores[j] < 3])
        scores[i] += 1
        remaining -= 1
    return scores


@dataclass(frozen=True)
class LoadResult:
    loaded: int  # patients written (each with everything about them)
    present: int  # patients whose identifier was stored already: skipped


def load(
    service: ResourceService,
    settings: Settings,
    bundles: Sequence[dict[str, Any]],
    advance: Callable[[int], None] | None = None,
) -> LoadResult:
    """Send each patient's Bundle through ``POST /fhir``'s code path, one transaction per patient.
    A patient whose identifier is already stored is skipped: its Bundle was committed whole."""
    loaded = present = 0
    for bundle in bundles:
        with service.session.begin():
            known = service.repo.by_identifiers("Patient", bundle["entry"][0]["resource"]) is not None
        if known:
            present += 1
        else:
            process_bundle(service, bundle, settings, ID_SYSTEM)
            loaded += 1
        if advance is not None:
            advance(1)
    return LoadResult(loaded, present)


def demo_service(session: Session, settings: Settings, tenant: str = DEFAULT_TENANT) -> ResourceService:
    """The service the demo writes with (audit agent ``cli:demo``)."""
    return ResourceService(
        session, tenant, settings.zone, DEMO_ACTOR, billing=settings.billing, care=settings.care
    )
