"""Deterministic shop data, day by day, for the bundled warehouse.

Every row belongs to the day it *arrives* at the source system, and what arrives on a day is
a pure function of that day: loading days 1..10 in one go or one at a time gives the same rows.
The data carries the awkward parts real sources have: orders that change status after they
are placed (late updates), orders placed just before midnight that land the next day, late
payments, refunds on returns, an append-only clickstream.

No Dagster here: the loader assets call it, tests call it directly.
"""

import functools
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas costs ~0.4 s to import: every code load and run worker paid it
    import numpy as np  # imported where data is made: a run worker rescuing dbt models never does
    import pandas as pd

DATA_EPOCH = date(2026, 1, 1)
"""The first day with data. Loading always starts here, so every warehouse agrees on history."""

SOURCES: tuple[str, ...] = (
    "customers",
    "products",
    "orders",
    "order_items",
    "payments",
    "web_events",
)

COLUMNS: dict[str, dict[str, str]] = {
    "customers": {
        "customer_id": "BIGINT",
        "first_name": "VARCHAR",
        "last_name": "VARCHAR",
        "email": "VARCHAR",
        "country": "VARCHAR",
        "signup_date": "DATE",
    },
    "products": {
        "product_id": "BIGINT",
        "product_name": "VARCHAR",
        "category": "VARCHAR",
        "unit_price": "DECIMAL(10, 2)",
    },
    "orders": {
        "order_id": "BIGINT",
        "customer_id": "BIGINT",
        "order_date": "DATE",
        "status": "VARCHAR",
        "updated_at": "TIMESTAMP",
    },
    "order_items": {
        "order_item_id": "BIGINT",
        "order_id": "BIGINT",
        "product_id": "BIGINT",
        "quantity": "INTEGER",
        "unit_price": "DECIMAL(10, 2)",
    },
    "payments": {
        "payment_id": "BIGINT",
        "order_id": "BIGINT",
        "payment_method": "VARCHAR",
        "amount": "DECIMAL(10, 2)",
        "paid_at": "TIMESTAMP",
    },
    "web_events": {
        "event_id": "BIGINT",
        "session_id": "BIGINT",
        "customer_id": "BIGINT",
        "event_type": "VARCHAR",
        "page": "VARCHAR",
        "event_at": "TIMESTAMP",
    },
}

_SEEDS = {name: i + 1 for i, name in enumerate((*SOURCES, "status", "late_returns"))}
_COUNTRIES = ["DE", "FR", "NL", "US", "GB", "ES"]
_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia"]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]
_CATEGORIES = ["books", "games", "garden", "kitchen", "toys"]
_PAGES = ["/", "/search", "/category", "/product", "/cart", "/blog", "/sale"]
_METHODS = ["card", "paypal", "bank_transfer", "gift_card"]
_N_PRODUCTS = 40


def _rng(kind: str, day: date) -> "np.random.Generator":
    import numpy as np

    return np.random.default_rng([_SEEDS[kind], day.toordinal()])


def _at(day: date, seconds: int) -> datetime:
    return datetime.combine(day, time()) + timedelta(seconds=int(seconds))


@functools.cache
def _new_customer_count(day: date) -> int:
    if day < DATA_EPOCH:
        return 0
    return 3 + int(_rng("customers", day).integers(0, 5))


def _pick_customers(rng: "np.random.Generator", day: date, n: int) -> list[int]:
    """Customers who had signed up by `day` (mostly recent ones)."""
    first = max(DATA_EPOCH, day - timedelta(days=60))
    span = (day - first).days + 1
    picked = []
    for _ in range(n):
        d = first + timedelta(days=int(rng.integers(0, span)))
        picked.append(d.toordinal() * 100 + int(rng.integers(0, _new_customer_count(d))))
    return picked


@functools.cache
def _product_prices() -> dict[int, float]:
    rng = _rng("products", DATA_EPOCH)
    return {p: round(float(rng.uniform(3, 120)), 2) for p in range(1, _N_PRODUCTS + 1)}


@functools.cache
def _orders_placed(day: date) -> tuple[tuple, ...]:
    """(order_id, customer_id, placed_at, arrives_on, items, late_payment) for orders of `day`."""
    if day < DATA_EPOCH:
        return ()
    rng = _rng("orders", day)
    n = 15 + int(rng.integers(0, 15))
    customers = _pick_customers(rng, day, n)
    prices = _product_prices()
    orders = []
    for i in range(n):
        seconds = int(rng.integers(0, 86400))
        # an order placed in the last hour of the day lands with the next day's batch
        arrives_on = day + timedelta(days=1) if seconds >= 82800 else day
        items = tuple(
            (p, int(rng.integers(1, 4)), prices[p])
            for p in (int(x) for x in rng.integers(1, _N_PRODUCTS + 1, int(rng.integers(1, 5))))
        )
        late_payment = bool(rng.random() < 0.1)
        order_id = day.toordinal() * 1000 + i
        orders.append((order_id, customers[i], _at(day, seconds), arrives_on, items, late_payment))
    return tuple(orders)


def _order_amount(items: tuple) -> float:
    return round(sum(q * price for _, q, price in items), 2)


@functools.cache
def _final_status(order_id: int) -> str:
    import numpy as np

    rng = np.random.default_rng([_SEEDS["status"], order_id])
    return "returned" if rng.random() < 0.06 else "completed"


def _arriving_orders(day: date) -> list[tuple]:
    return [
        o
        for placed_on in (day, day - timedelta(days=1))
        for o in _orders_placed(placed_on)
        if o[3] == day
    ]


def rows_arriving(source: str, day: date) -> list[tuple]:
    """The rows of `source` that arrive on `day`, in COLUMNS order."""
    if day < DATA_EPOCH:
        return []
    if source == "products":
        if day != DATA_EPOCH:
            return []
        rng = _rng("products", day)
        return [
            (p, f"Product {p:02d}", _CATEGORIES[int(rng.integers(0, len(_CATEGORIES)))], price)
            for p, price in _product_prices().items()
        ]
    if source == "customers":
        rng = _rng("customers", day)
        rng.integers(0, 5)  # the count, drawn in _new_customer_count
        return [
            (
                day.toordinal() * 100 + i,
                (first := _FIRST[int(rng.integers(0, len(_FIRST)))]),
                (last := _LAST[int(rng.integers(0, len(_LAST)))]),
                f"{first}.{last}.{day.toordinal() * 100 + i}@example.com".lower(),
                _COUNTRIES[int(rng.integers(0, len(_COUNTRIES)))],
                day,
            )
            for i in range(_new_customer_count(day))
        ]
    if source == "orders":
        rows = [(o[0], o[1], o[2].date(), "placed", o[2]) for o in _arriving_orders(day)]
        # status changes of older orders land days later: shipped after 2 days, then
        # completed or returned after 5
        for age, stage in ((2, "shipped"), (5, "final")):
            for o in _orders_placed(day - timedelta(days=age)):
                status = _final_status(o[0]) if stage == "final" else stage
                updated = _at(day, 36000 + o[0] % 3600)
                rows.append((o[0], o[1], o[2].date(), status, updated))
        return rows
    if source == "order_items":
        return [
            (o[0] * 10 + j, o[0], p, q, price)
            for o in _arriving_orders(day)
            for j, (p, q, price) in enumerate(o[4])
        ]
    if source == "payments":
        rows = []
        for o in _arriving_orders(day):
            if not o[5]:
                rows.append(_payment(o, day))
        for o in _arriving_orders(day - timedelta(days=1)):
            if o[5]:
                rows.append(_payment(o, day))
        for o in _orders_placed(day - timedelta(days=5)):
            if _final_status(o[0]) == "returned":
                rows.append((o[0] * 10 + 1, o[0], "card", -_order_amount(o[4]), _at(day, 43200)))
        return rows
    if source == "web_events":
        import numpy as np

        rng = _rng("web_events", day)
        n_sessions = 60 + int(rng.integers(0, 40))
        known = _pick_customers(rng, day, n_sessions)
        rows = []
        for s in range(n_sessions):
            session_id = day.toordinal() * 1000 + s
            customer = known[s] if rng.random() < 0.4 else None
            start = int(rng.integers(0, 86400 - 3600))
            n_events = int(rng.integers(1, 9))
            offsets = np.sort(rng.integers(0, 3600, n_events))
            converts = rng.random() < 0.15
            for j, offset in enumerate(offsets):
                if converts and j == n_events - 1:
                    event_type, page = "checkout", "/checkout"
                else:
                    event_type = "add_to_cart" if rng.random() < 0.1 else "page_view"
                    page = _PAGES[int(rng.integers(0, len(_PAGES)))]
                rows.append(
                    (
                        session_id * 100 + j,
                        session_id,
                        customer,
                        event_type,
                        page,
                        _at(day, start + int(offset)),
                    )
                )
        return rows
    raise ValueError(f"unknown source {source!r}; known: {', '.join(SOURCES)}")


def _payment(order: tuple, day: date) -> tuple:
    method = _METHODS[order[0] % len(_METHODS)]
    return (order[0] * 10, order[0], method, _order_amount(order[4]), _at(day, 40000))


def late_returns(through: date, count: int) -> dict[str, list[tuple]]:
    """`count` returns of orders placed 40-60 days before `through`: corrections that land long
    after the order's month was closed (outside any short incremental window)."""
    rng = _rng("late_returns", through)
    orders, payments, seen = [], [], set()
    for _ in range(count):
        placed_on = through - timedelta(days=int(rng.integers(40, 61)))
        candidates = [o for o in _orders_placed(placed_on) if _final_status(o[0]) == "completed"]
        if not candidates:
            continue
        o = candidates[int(rng.integers(0, len(candidates)))]
        if o[0] in seen:
            continue
        seen.add(o[0])
        orders.append((o[0], o[1], o[2].date(), "returned", _at(through, 50000)))
        payments.append((o[0] * 10 + 2, o[0], "card", -_order_amount(o[4]), _at(through, 50000)))
    return {"orders": orders, "payments": payments}


def frame(source: str, rows: list[tuple], batch_date: date, loaded_at: datetime) -> "pd.DataFrame":
    """Rows as a DataFrame with the landing columns every raw table carries."""
    import pandas as pd

    df = pd.DataFrame.from_records(rows, columns=list(COLUMNS[source]))
    df["batch_date"] = batch_date
    df["loaded_at"] = loaded_at
    return df
