-- Publication `plugin_read`: what the read replica receives.
--
-- Plugin endpoints (/updates, /stats, /channel_self) gate devices on a logical read replica,
-- which holds tables only — no views, no functions, no RLS helpers. This publication is the
-- replica data contract: exactly the tables and columns the plugin read path may touch.
-- Column lists keep everything else (names, billing details) off the replica.

create publication plugin_read for table public.orgs (id, has_usage_credits);

comment on publication plugin_read is
  'Replica data contract for the plugin read path; see README "Replica data contract".';
