"""The alarm engine's cost per sample, beside the process image's own cost per update, on a site of 200 chargers.

200 chargers of 2 EVSEs carry the built-in alarms (offline, faulted, connector faulted, uncontrollable, upstream
unreachable: 1,200 alarms) and two configured templates per EVSE (power and current limits with deadbands and
delays: 800 more) -- 2,000 alarms. A seeded stream of updates such as the chargers send (power and current every
sample, statuses now and then, a charger dropping and coming back), values crossing the limits a few percent of the
time, is given:

- to the process image, as the drivers give it (``ProcessImage.set``, with one feed following everything, as the
  bridges and the annunciator do): the baseline;
- to the alarm engine, as the annunciator gives it (``Board.sample`` for each update, ``Board.tick`` after each
  batch of 100): what the alarms add.

Prints microseconds per update for both, their ratio, and the transitions the engine made; the last line is JSON.

    .venv/bin/python bench/alarms.py [--seconds 5] [--chargers 200]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from measure import pin  # noqa: E402 -- bench/, beside this script

from gateway.points import ProcessImage  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from rules.alarm_definitions import definitions  # noqa: E402
from rules.alarms import Board  # noqa: E402

BATCH = 100  # updates between two ticks (the annunciator's round)


def site(chargers: int) -> Settings:
    return Settings.model_validate({
        "chargers": [{"id": f"CP{n:03d}", "evses": 2, "password": "a-password-of-CP-16c"} for n in range(chargers)],
        "alarms": [
            {"id": "evse-power-high", "point": "chargers/*/evse/*/power_w",
             "high": {"limit": 21000, "deadband": 500, "delay_s": 5, "level": 12},
             "high_high": {"limit": 23000, "deadband": 500, "level": 18}},
            {"id": "evse-current-high", "point": "chargers/*/evse/*/current_a",
             "high": {"limit": 31, "deadband": 1, "delay_s": 2, "level": 12}},
        ],
    })  # fmt: skip


def updates(chargers: int, count: int, seed: int = 7) -> list[tuple[str, Any]]:
    rng = random.Random(seed)
    out: list[tuple[str, Any]] = []
    for _ in range(count):
        c, e = f"CP{rng.randrange(chargers):03d}", rng.randint(1, 2)
        roll = rng.random()
        if roll < 0.45:
            out.append((f"chargers/{c}/evse/{e}/power_w", rng.uniform(0, 20000) if rng.random() > 0.03
                        else rng.uniform(21000, 24000)))  # fmt: skip
        elif roll < 0.9:
            out.append((f"chargers/{c}/evse/{e}/current_a", rng.uniform(0, 30) if rng.random() > 0.03
                        else rng.uniform(31, 33)))  # fmt: skip
        elif roll < 0.97:
            out.append((f"chargers/{c}/evse/{e}/status", rng.choice(["Available", "Charging", "SuspendedEV",
                                                                     "Faulted" if rng.random() < 0.1 else "Charging"])))
        elif roll < 0.99:
            out.append((f"chargers/{c}/online", rng.random() > 0.3))
        else:
            out.append((f"chargers/{c}/controllable", rng.random() > 0.2))
    return out


def every_point(chargers: int) -> list[tuple[str, Any]]:
    """One value for each point, so that every alarm exists before timing (a running site's state)."""
    out: list[tuple[str, Any]] = []
    for n in range(chargers):
        c = f"CP{n:03d}"
        out += [(f"chargers/{c}/online", True), (f"chargers/{c}/status", "Available"),
                (f"chargers/{c}/controllable", True), (f"chargers/{c}/upstream_online", True)]  # fmt: skip
        for e in (1, 2):
            out += [(f"chargers/{c}/evse/{e}/status", "Available"), (f"chargers/{c}/evse/{e}/power_w", 0.0),
                    (f"chargers/{c}/evse/{e}/current_a", 0.0)]  # fmt: skip
    return out


def run_image(stream: list[tuple[str, Any]], seconds: float) -> tuple[int, float]:
    image = ProcessImage()
    feed = image.feed("")
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        for name, value in stream:
            image.set(name, value)
        done += len(stream)
        feed.get_nowait()
    return done, time.perf_counter() - began


def run_engine(board: Board, stream: list[tuple[str, Any]], seconds: float, clock: list[float]) -> tuple[int, float, int]:
    done, transitions, began = 0, 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        for i in range(0, len(stream), BATCH):
            clock[0] += 0.1  # a round every 100 ms of site time
            now = clock[0]
            for name, value in stream[i : i + BATCH]:
                transitions += len(board.sample(name, value, False, now))
            transitions += len(board.tick(now))
            board.changed.clear()
        done += len(stream)
    return done, time.perf_counter() - began, transitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="how long each side runs")
    parser.add_argument("--chargers", type=int, default=200)
    args = parser.parse_args()
    pin(0)
    board = Board(definitions(site(args.chargers)))
    clock = [0.0]
    for name, value in every_point(args.chargers):
        board.sample(name, value, False, clock[0])
    board.changed.clear()
    alarms = len(board.alarms)
    stream = updates(args.chargers, 20000)
    image_n, image_s = run_image(stream, args.seconds)
    engine_n, engine_s, transitions = run_engine(board, stream, args.seconds, clock)
    image_us, engine_us = image_s / image_n * 1e6, engine_s / engine_n * 1e6
    print(f"{alarms} alarms on {args.chargers} chargers ({len(board.definitions)} definitions), "
          f"{len(stream)} distinct updates replayed")  # fmt: skip
    print(f"process image: {image_us:8.2f} us per update   ({image_n} updates in {image_s:.2f} s)")
    print(f"alarm engine:  {engine_us:8.2f} us per sample   ({engine_n} samples in {engine_s:.2f} s, "
          f"{transitions} transitions)")  # fmt: skip
    print(f"ratio engine / image: {engine_us / image_us:.2f}")
    states: dict[str, int] = {}
    for a in board.alarms.values():
        states[str(a.state)] = states.get(str(a.state), 0) + 1
    print(json.dumps({"bench": "alarms", "chargers": args.chargers, "alarms": alarms, "samples": engine_n,
                      "engine_us_per_sample": round(engine_us, 3), "image_updates": image_n,
                      "image_us_per_update": round(image_us, 3), "ratio": round(engine_us / image_us, 3),
                      "transitions": transitions, "states": states}))  # fmt: skip


if __name__ == "__main__":

    main()
