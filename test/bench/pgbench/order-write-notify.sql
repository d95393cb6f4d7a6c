-- The order-write limit with what a stockctl stock change does while someone listens (an
-- event stream open, or stock --watch): a pg_notify of the changed level in the same
-- transaction. Beside order-write.sql, it measures what that NOTIFY costs.
\set i random(1, :skus)
WITH lv AS (
  UPDATE stock_levels SET reserved_stock = reserved_stock + 1, version = version + 1, updated_at = now()
   WHERE sku = 'PGBENCH-' || :i AND location = 'default' AND stock_quantity - reserved_stock >= 1
  RETURNING product_id, variant_id, sku, location, stock_quantity, reserved_stock, incoming, version, in_stock
), up AS (
  -- The name and price the order line is written with, as a reserve reads them.
  SELECT lv.*, p.name, p.price FROM lv JOIN products p ON p.product_id = lv.product_id
), n AS (
  SELECT pg_notify('stockctl_stock', json_build_object('sku', sku, 'name', name, 'location', location,
         'location_active', (SELECT loc.active FROM locations loc WHERE loc.code = up.location),
         'stock_quantity', stock_quantity, 'reserved_stock', reserved_stock, 'incoming', incoming,
         'available', stock_quantity - reserved_stock, 'version', version, 'in_stock', in_stock)::text) FROM up
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
