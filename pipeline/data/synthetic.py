"""Seeded synthetic B2B dataset: customers, products and their interactions.

The pipeline reads one denormalised CSV (``interactions.csv``: one row per interaction with the customer's and
the product's features); ``customers.csv`` and ``products.csv`` are written next to it as the catalogues.

    python -m pipeline.data.synthetic --interactions 5000 --output /tmp/data
"""
from __future__ import annotations

import argparse
import csv
import os
import random
from dataclasses import dataclass

CITIES = ["Warsaw", "Krakow", "Gdansk", "Wroclaw", "Poznan", "Lodz", "Berlin", "Prague", "Vienna", "Vilnius"]
SEGMENTS = ["enterprise", "mid_market", "small_business", "horeca", "retail"]
CATEGORIES = ["beverages", "dairy", "bakery", "frozen", "produce", "cleaning", "office", "meat", "snacks", "spices"]

INTERACTION_COLUMNS = [
    "customer_id", "city", "segment", "revenue",
    "product_id", "category", "price",
    "rating", "timestamp",
]


@dataclass(frozen=True)
class DatasetSize:
    customers: int
    products: int
    interactions: int


def size_for(interactions: int) -> DatasetSize:
    """Catalogue sizes that grow with the number of interactions (roughly 20 per customer)."""
    customers = max(50, interactions // 20)
    products = max(100, min(5000, interactions // 10))
    return DatasetSize(customers=customers, products=products, interactions=interactions)


def generate(interactions: int, seed: int = 42):
    """Return (customers, products, rows) as lists of dicts. Same seed and size -> same data."""
    if interactions < 1:
        raise ValueError("interactions must be >= 1")
    rng = random.Random(seed)
    size = size_for(interactions)
    customers = []
    for i in range(size.customers):
        segment = rng.choice(SEGMENTS)
        base = {"enterprise": 200_000, "mid_market": 50_000, "small_business": 8_000,
                "horeca": 20_000, "retail": 12_000}[segment]
        customers.append({
            "customer_id": f"CUST{i:06d}",
            "city": rng.choice(CITIES),
            "segment": segment,
            "revenue": round(base * rng.lognormvariate(0, 0.5), 2),
        })
    products = []
    for j in range(size.products):
        category = CATEGORIES[j % len(CATEGORIES)]
        products.append({
            "product_id": f"{367000000000 + j * 1001:012d}",
            "category": category,
            "price": round(rng.lognormvariate(2.5, 0.8), 2),
        })
    by_category = {c: [p for p in products if p["category"] == c] for c in CATEGORIES}
    # Each segment and city prefers a few categories, so there is structure to learn.
    segment_pref = {s: rng.sample(CATEGORIES, 3) for s in SEGMENTS}
    city_pref = {c: rng.sample(CATEGORIES, 2) for c in CITIES}
    # Each customer has a small basket of favourite products inside the preferred categories.
    favourites = {}
    for c in customers:
        cats = segment_pref[c["segment"]] + city_pref[c["city"]]
        favourites[c["customer_id"]] = [rng.choice(by_category[rng.choice(cats)]) for _ in range(8)]
    rows = []
    t0 = 1_735_689_600  # 2025-01-01T00:00:00Z
    for k in range(interactions):
        c = customers[rng.randrange(len(customers))]
        r = rng.random()
        if r < 0.6:
            p = rng.choice(favourites[c["customer_id"]])
        elif r < 0.85:
            cats = segment_pref[c["segment"]] + city_pref[c["city"]]
            p = rng.choice(by_category[rng.choice(cats)])
        else:
            p = products[rng.randrange(len(products))]
        liked = p["category"] in segment_pref[c["segment"]]
        rating = min(5, max(1, round(rng.gauss(4.0 if liked else 2.5, 0.8))))
        rows.append({
            **c, **p,
            "rating": int(rating),
            "timestamp": t0 + k * 37 + rng.randrange(37),
        })
    return customers, products, rows


def write_csv(path: str, rows, columns) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_dataset(output_dir: str, interactions: int, seed: int = 42) -> str:
    """Write the dataset; returns the directory holding ``interactions.csv`` (the ExampleGen input)."""
    customers, products, rows = generate(interactions, seed)
    data_dir = os.path.join(output_dir, "interactions")
    os.makedirs(data_dir, exist_ok=True)
    write_csv(os.path.join(data_dir, "interactions.csv"), rows, INTERACTION_COLUMNS)
    write_csv(os.path.join(output_dir, "customers.csv"), customers, ["customer_id", "city", "segment", "revenue"])
    write_csv(os.path.join(output_dir, "products.csv"), products, ["product_id", "category", "price"])
    return data_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    print(write_dataset(args.output, args.interactions, args.seed))


if __name__ == "__main__":
    main()
