ALTER TABLE "orders" ADD COLUMN "payment_method" text;--> statement-breakpoint
ALTER TABLE "orders" ADD COLUMN "payment_window_seconds" integer;--> statement-breakpoint
ALTER TABLE "orders" ADD COLUMN "priority" text;--> statement-breakpoint
ALTER TABLE "orders" ADD CONSTRAINT "orders_payment_window_positive" CHECK ("orders"."payment_window_seconds" > 0);