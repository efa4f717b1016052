import csv

from pipeline.data import synthetic


def test_same_seed_same_data_and_different_seed_differs():
    a = synthetic.generate(500, seed=1)
    b = synthetic.generate(500, seed=1)
    c = synthetic.generate(500, seed=2)
    assert a == b
    assert a[2] != c[2]


def test_interactions_are_consistent_with_catalogues():
    customers, products, rows = synthetic.generate(2000, seed=3)
    assert len(rows) == 2000
    by_customer = {c["customer_id"]: c for c in customers}
    by_product = {p["product_id"]: p for p in products}
    for r in rows:
        assert 1 <= r["rating"] <= 5
        assert by_customer[r["customer_id"]]["city"] == r["city"]
        assert by_customer[r["customer_id"]]["segment"] == r["segment"]
        assert by_product[r["product_id"]]["price"] == r["price"]
    assert [r["timestamp"] for r in rows] == sorted(r["timestamp"] for r in rows)


def test_write_dataset(tmp_path):
    data_dir = synthetic.write_dataset(str(tmp_path), 300, seed=4)
    with open(f"{data_dir}/interactions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 300
    assert list(rows[0]) == synthetic.INTERACTION_COLUMNS
    assert (tmp_path / "customers.csv").exists() and (tmp_path / "products.csv").exists()
