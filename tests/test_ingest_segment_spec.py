"""Segment ecommerce-spec payloads map onto the tracking plan."""

from tests.conftest import BROWSER_KEY, queued_rows


def test_segment_order_completed_products_become_items(client, event_log):
    r = client.post("/v1/track", json={"event": "Order Completed", "anonymousId": "a", "messageId": "oc1",
        "properties": {"orderId": "o1", "revenue": 10.5, "currency": "USD",
                       "products": [{"productId": "p1", "name": "Shoe", "price": 10.5, "quantity": 1}]}},
        auth=(BROWSER_KEY, ""))
    assert r.status_code == 200, r.text
    row = queued_rows(event_log)[0]
    assert row["event"] == "purchase" and row["flags"] == []
    assert '"items":[{"product_id":"p1"' in row["properties"]
