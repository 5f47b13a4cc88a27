"""Wall-clock load for the live benchmark, and bulk loading of prepared JSONL into topics.

    python benchmarks/loadgen.py live --bootstrap B --rate 5000 --book-rate 5000 --duration 70 \
        --spike-every 2 --spikes-out spikes.jsonl
    python benchmarks/loadgen.py load --bootstrap B peer.trades=trades.jsonl

Standalone on purpose (standard library + a Kafka client): it runs under .cache/bench-venv with
confluent-kafka (librdkafka: ~10x cheaper per record than kafka-python, so the load generator
leaves the CPU to what is measured), or under .venv with kafka-python when that venv is missing.

`live` differs from `python -m producer synthetic --rate R` in one way that matters here: every
record's event time is the wall clock at the moment it is sent (the producer's session clock runs
ahead of the wall clock under --rate, so latency could not be measured from it). Prices sit on a
per-ticker level with a one-tick bounce, so nothing moves 2 % except the injected spikes: every
`--spike-every` seconds one ticker (in turn) jumps 3 % (up, then down on its next turn) and stays
there; the spike trade's ticker, kind and ts go to --spikes-out. Producer settings as the
project's producer: idempotent, acks=all.

Over 300 lines: one standalone program (it runs in the bench venv, apart from the project).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time

TICKER_PRICES = {
    "SBER": 300.0,
    "GAZP": 130.0,
    "VTBR": 75.0,
    "LKOH": 6800.0,
    "YDEX": 4000.0,
    "GMKN": 120.0,
    "ROSN": 450.0,
    "NVTK": 1000.0,
    "TATN": 650.0,
    "MGNT": 4500.0,
}
SPIKE = 1.03  # > the 2 % the anomaly SQL looks for, with room for the one-tick bounce


class Producer:
    """confluent-kafka when importable, else kafka-python; both idempotent with acks=all."""

    def __init__(self, bootstrap: str, linger_ms: int = 5) -> None:
        self.errors = 0
        try:
            import confluent_kafka

            self.kind = "confluent-kafka " + confluent_kafka.version()[0]
            self._p = confluent_kafka.Producer(
                {
                    "bootstrap.servers": bootstrap,
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": linger_ms,
                    "compression.type": "lz4",
                    "partitioner": "murmur2_random",  # the Java / kafka-python key hash
                    "queue.buffering.max.messages": 1_000_000,
                    "queue.buffering.max.kbytes": 512 * 1024,
                }
            )
            self._confluent = True
        except ImportError:
            from kafka import KafkaProducer

            self.kind = "kafka-python"
            self._p = KafkaProducer(
                bootstrap_servers=bootstrap,
                enable_idempotence=True,
                acks="all",
                linger_ms=linger_ms,
                batch_size=256 * 1024,
            )
            self._confluent = False

    def _on_delivery(self, err, _msg) -> None:
        if err is not None:
            self.errors += 1

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        if self._confluent:
            while True:
                try:
                    self._p.produce(topic, value, key, on_delivery=self._on_delivery)
                    return
                except BufferError:
                    self._p.poll(0.01)
        else:
            self._p.send(topic, value=value, key=key)

    def poll(self) -> None:
        if self._confluent:
            self._p.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        self._p.flush(timeout_s)


class Market:
    """Price levels in ticks of 0.01 RUB; a trade is the level plus a one-tick bounce."""

    def __init__(self, tickers: list[str], seed: int) -> None:
        self.rng = random.Random(seed)
        self.tickers = tickers
        self.keys = {t: t.encode() for t in tickers}
        self.level = {t: int(TICKER_PRICES.get(t, 100.0) * 100) for t in tickers}
        self.next_kind = {t: "spike_up" for t in tickers}
        base = int(time.time() * 1000) * 1000
        self.trade_id = base
        self.seq = {t: base for t in tickers}
        self._books: dict[tuple[str, int], str] = {}
        self.spike_turn = 0

    def trade(self, ticker: str, ts: int, ticks: int | None = None) -> bytes:
        self.trade_id += 1
        rng = self.rng
        if ticks is None:
            ticks = self.level[ticker] + rng.randint(-1, 1)
        side = "B" if rng.random() < 0.5 else "S"
        return (
            f'{{"event_id":"{ticker}:T:{self.trade_id}","ticker":"{ticker}","board":"TQBR",'
            f'"trade_id":{self.trade_id},"ts":{ts},"price":{ticks // 100}.{ticks % 100:02d},'
            f'"qty":{rng.randint(1, 50)},"side":"{side}"}}'
        ).encode()

    def book(self, ticker: str, ts: int) -> bytes:
        level = self.level[ticker]
        levels = self._books.get((ticker, level))
        if levels is None:
            bids = ",".join(
                f"[{(level - 1 - k) // 100}.{(level - 1 - k) % 100:02d},{100 + 37 * k}]"
                for k in range(10)
            )
            asks = ",".join(
                f"[{(level + 1 + k) // 100}.{(level + 1 + k) % 100:02d},{90 + 41 * k}]"
                for k in range(10)
            )
            levels = self._books[(ticker, level)] = f'"bids":[{bids}],"asks":[{asks}]'
        self.seq[ticker] += 1
        seq = self.seq[ticker]
        return (
            f'{{"event_id":"{ticker}:B:{seq}","ticker":"{ticker}","ts":{ts},"seq":{seq},{levels}}}'
        ).encode()

    def spike(self, ts: int) -> tuple[str, str, bytes]:
        """Move the next ticker in turn by 3 % (alternately up and down) and trade there."""
        ticker = self.tickers[self.spike_turn % len(self.tickers)]
        self.spike_turn += 1
        kind = self.next_kind[ticker]
        if kind == "spike_up":
            self.level[ticker] = round(self.level[ticker] * SPIKE)
            ticks = self.level[ticker] + 1  # the spike trade: the new level's ask
            self.next_kind[ticker] = "spike_down"
        else:
            self.level[ticker] = round(self.level[ticker] / SPIKE)
            ticks = self.level[ticker] - 1
            self.next_kind[ticker] = "spike_up"
        return ticker, kind, self.trade(ticker, ts, ticks)


def live(args: argparse.Namespace) -> int:
    producer = Producer(args.bootstrap)
    market = Market(args.tickers.split(","), args.seed)
    trades_topic, books_topic = args.prefix + "trades", args.prefix + "orderbook"
    status_topic = args.prefix + "market_status"
    spikes = open(args.spikes_out, "a") if args.spikes_out else None
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    now_ms = int(time.time() * 1000)
    status = f'{{"event_id":"*:S:{now_ms}","ticker":"*","ts":{now_ms},"phase":"trading"}}'
    producer.send(status_topic, b"*", status.encode())
    tickers = market.tickers
    count = len(tickers)
    sent_trades = sent_books = 0
    start = time.monotonic()
    next_stat = start + 1.0
    next_spike = start + args.spike_every if args.spike_every > 0 else float("inf")
    print(json.dumps({"event": "start", "wall": time.time(), "client": producer.kind}), flush=True)
    while not stop:
        now = time.monotonic()
        elapsed = now - start
        if args.duration and elapsed >= args.duration:
            break
        ts = int(time.time() * 1000)
        if now >= next_spike:
            next_spike += args.spike_every
            ticker, kind, value = market.spike(ts)
            producer.send(trades_topic, market.keys[ticker], value)
            sent_trades += 1
            if spikes is not None:
                spikes.write(json.dumps({"ticker": ticker, "kind": kind, "ts": ts}) + "\n")
                spikes.flush()
        due = int(args.rate * elapsed) - sent_trades
        # At most 50 ms of records per burst: a generator that cannot keep the rate falls
        # behind (and the stats show it) instead of flooding after a stall.
        burst = max(0, min(due, max(1, int(args.rate * 0.05))))
        for i in range(burst):
            ticker = tickers[(sent_trades + i) % count]
            producer.send(trades_topic, market.keys[ticker], market.trade(ticker, ts))
        sent_trades += burst
        due = int(args.book_rate * elapsed) - sent_books
        burst = max(0, min(due, max(1, int(args.book_rate * 0.05))))
        for i in range(burst):
            ticker = tickers[(sent_books + i) % count]
            producer.send(books_topic, market.keys[ticker], market.book(ticker, ts))
        sent_books += burst
        producer.poll()
        if now >= next_stat:
            next_stat += 1.0
            print(
                json.dumps(
                    {
                        "event": "stat",
                        "wall": time.time(),
                        "elapsed": round(elapsed, 3),
                        "trades": sent_trades,
                        "books": sent_books,
                        "errors": producer.errors,
                    }
                ),
                flush=True,
            )
        pause = 0.005 - (time.monotonic() - now)
        if pause > 0:
            time.sleep(pause)
    elapsed = time.monotonic() - start
    producer.flush()
    if spikes is not None:
        spikes.close()
    print(
        json.dumps(
            {
                "event": "done",
                "wall": time.time(),
                "elapsed": round(elapsed, 3),
                "trades": sent_trades,
                "books": sent_books,
                "trades_per_s": round(sent_trades / elapsed, 1),
                "books_per_s": round(sent_books / elapsed, 1),
                "errors": producer.errors,
                "client": producer.kind,
            }
        ),
        flush=True,
    )
    return 0 if producer.errors == 0 else 1


def load(args: argparse.Namespace) -> int:
    """topic=file.jsonl pairs: every line to its topic, keyed by its ticker, as fast as possible."""
    producer = Producer(args.bootstrap, linger_ms=20)
    start = time.monotonic()
    records = 0
    for pair in args.pairs:
        topic, _, path = pair.partition("=")
        with open(path, "rb") as lines:
            for line in lines:
                line = line.rstrip(b"\n")
                if not line:
                    continue
                at = line.find(b'"ticker":"') + 10
                key = line[at : line.find(b'"', at)]
                producer.send(topic, key, line)
                records += 1
                if records & 1023 == 0:
                    producer.poll()
    producer.flush(120)
    elapsed = time.monotonic() - start
    print(
        json.dumps(
            {
                "event": "done",
                "records": records,
                "seconds": round(elapsed, 3),
                "errors": producer.errors,
                "client": producer.kind,
            }
        ),
        flush=True,
    )
    return 0 if producer.errors == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/loadgen.py")
    sub = parser.add_subparsers(dest="command", required=True)
    lv = sub.add_parser("live", help="trades and books with event time = now, at fixed rates")
    lv.add_argument("--bootstrap", required=True)
    lv.add_argument("--prefix", default="moex.")
    lv.add_argument("--rate", type=float, required=True, help="trades per second")
    lv.add_argument("--book-rate", type=float, default=0.0, help="book snapshots per second")
    lv.add_argument("--duration", type=float, default=0.0, help="seconds, 0 = until SIGTERM")
    lv.add_argument("--spike-every", type=float, default=0.0, help="seconds between spikes")
    lv.add_argument("--spikes-out", help="JSONL of injected spikes (ticker, kind, ts)")
    lv.add_argument("--tickers", default=",".join(TICKER_PRICES))
    lv.add_argument("--seed", type=int, default=1)
    ld = sub.add_parser("load", help="bulk-load JSONL files: TOPIC=FILE ...")
    ld.add_argument("--bootstrap", required=True)
    ld.add_argument("pairs", nargs="+", metavar="TOPIC=FILE")
    args = parser.parse_args(argv)
    return live(args) if args.command == "live" else load(args)


if __name__ == "__main__":
    sys.exit(main())
