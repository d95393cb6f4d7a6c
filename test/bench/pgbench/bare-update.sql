-- The bare row limit: the guarded UPDATE alone, one unit, on one of :skus rows.
\set i random(1, :skus)
UPDATE products SET reserved_stock = reserved_stock + 1, version = version + 1, updated_at = now()
 WHERE sku = 'PGBENCH-' || :i AND stock_quantity - reserved_stock >= 1;
