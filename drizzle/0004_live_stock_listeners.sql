CREATE TABLE "stock_listeners" (
	"listener_id" bigserial PRIMARY KEY NOT NULL,
	"pid" integer NOT NULL,
	"backend_start" timestamp with time zone NOT NULL,
	"application" text NOT NULL,
	"registered_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
-- Is anyone listening for live stock? Asked by every stock change after its first row
-- changed (src/engine/stock.ts), so that it sends its NOTIFY only while a listener's
-- session is alive. Volatile plpgsql: its query takes a snapshot of its own, so it sees a
-- listener that registered after the change's statement began (src/engine/stock-events.ts
-- says why that closes the race). A row whose session has ended counts for nothing; a
-- session of another role shows no backend_start, and counts.
CREATE FUNCTION "stock_listening"() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  RETURN EXISTS (
    SELECT 1 FROM stock_listeners l
     WHERE EXISTS (SELECT 1 FROM pg_stat_get_activity(l.pid) a
                    WHERE a.backend_start IS NULL OR a.backend_start = l.backend_start));
END
$$;--> statement-breakpoint
-- A token revoked, deleted, renamed or given another role ends its open event streams:
-- the notification goes on the stock channel, so a listener hears it in commit order
-- among the stock changes (src/engine/stock-events.ts, STOCK_CHANNEL).
CREATE FUNCTION "stockctl_token_changed"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('stockctl_stock', json_build_object('token', OLD.name)::text);
  RETURN NULL;
END
$$;--> statement-breakpoint
CREATE TRIGGER "api_tokens_changed" AFTER UPDATE OF "revoked_at", "role", "token_hash", "name" OR DELETE ON "api_tokens"
  FOR EACH ROW EXECUTE FUNCTION "stockctl_token_changed"();
