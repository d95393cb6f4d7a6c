-- The order-write limit with what every stockctl stock change does for live stock: after
-- the level changed, read the count of listeners (the stock_listeners_live sequence, as it
-- is now) and send the pg_notify only if someone listens. Nobody listens here, so beside
-- order-write.sql it measures what the question costs when the answer is no.
\set i random(1, :skus)
WITH lv AS (
  UPDATE stock_levels SET reserved_stock = reserved_stock + 1, version = version + 1, updated_at = now()
   WHERE sku = 'PGBENCH-' || :i AND location = 'default' AND stock_quantity - reserved_stock >= 1
  RETURNING product_id, variant_id, sku, location, stock_quantity, reserved_stock, incoming, version, in_stock
), up AS (
  -- The name and price the order line is written with, as a reserve reads them.
  SELECT lv.*, p.name, p.price FROM lv JOIN products p ON p.product_id = lv.product_id
), listening AS (
  SELECT (SELECT live.last_value > 0 FROM stock_listeners_live live WHERE one.changed) AS yes
    FROM (SELECT true AS changed FROM up LIMIT 1) one
), n AS (
  SELECT CASE WHEN l.yes THEN pg_notify('stockctl_stock', json_build_object('sku', sku, 'name', name, 'location', location,
         'location_active', (SELECT loc.active FROM locations loc WHERE loc.code = up.location),
         'stock_quantity', stock_quantity, 'reserved_stock', reserved_stock, 'incoming', incoming,
         'available', stock_quantity - reserved_stock, 'version', version, 'in_stock', in_stock)::text) END FROM up CROSS JOIN listening l
), o AS (
  INSERT INTO orders (status, payment_expires_at, subtotal, total, item_count)
  SELECT 'pending', now() + interval '15 minutes', price, price, 1 FROM up, n
  RETURNING order_id
), li AS (
  INSERT INTO order_items (order_id, product_id, variant_id, sku, name, unit_price, quantity, line_total)
  SELECT o.order_id, up.product_id, up.variant_id, up.sku, up.name, up.price, 1, up.price FROM o, up
  RETURNING order_item_id, order_id
), r AS (
  INSERT INTO stock_reservations (order_id, order_item_id, product_id, variant_id, sku, location, quantity, expires_at)
  SELECT li.order_id, li.order_item_id, up.product_id, up.variant_id, up.sku, up.location, 1, now() + interval '15 minutes' FROM li, up
  RETURNING reservation_id, order_id
)
INSERT INTO stock_movements (product_id, variant_id, sku, location, kind, stock_delta, reserved_delta, incoming_delta, order_id, reservation_id, actor)
SELECT up.product_id, up.variant_id, up.sku, up.location, 'reserve', 0, 1, 0, r.order_id, r.reservation_id, 'pgbench' FROM r, up;
