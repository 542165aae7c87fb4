package stackyard

import rego.v1

# 2026-12-01T00:00:00Z, the "now" every test runs at (time.now_ns is replaced with `with`).
mock_now := 1796083200000000000

mock_env(ephemeral, expires_at) := {
	"stage": "environment",
	"environment": {
		"name": "pr-42",
		"type": "ephemeral",
		"owner": "team-checkout",
		"ephemeral": ephemeral,
		"expires_at": expires_at,
		"regions": ["local"],
		"labels": {},
		"parent": "dev",
	},
}

test_24h_ttl_passes if {
	count(deny) == 0 with input as mock_env(true, "2026-12-02T00:00:00Z") with time.now_ns as mock_now
}

test_exactly_72h_passes if {
	count(deny) == 0 with input as mock_env(true, "2026-12-04T00:00:00Z") with time.now_ns as mock_now
}

test_one_second_past_72h_is_denied if {
	deny == {{
		"msg": "ephemeral environment pr-42 would expire in 73 h (at 2026-12-04T00:00:01Z), more than the 72 h allowed",
		"rule": "ttl-too-long",
	}} with input as mock_env(true, "2026-12-04T00:00:01Z") with time.now_ns as mock_now
}

test_a_week_is_denied if {
	denied := deny with input as mock_env(true, "2026-12-08T00:00:00Z") with time.now_ns as mock_now
	some d in denied
	d.rule == "ttl-too-long"
	contains(d.msg, "expire in 168 h")
}

test_the_same_expiry_passes_once_time_has_moved_on if {
	# 2026-12-06T00:00:00Z: the expiry of test_a_week_is_denied is now 48 h away.
	count(deny) == 0 with input as mock_env(true, "2026-12-08T00:00:00Z")
		with time.now_ns as 1796515200000000000
}

test_no_expiry_is_denied if {
	deny == {{
		"msg": "ephemeral environment pr-42 has no expiry; give it a TTL of at most 72 h (--ttl)",
		"rule": "ttl-missing",
	}} with input as mock_env(true, null) with time.now_ns as mock_now
}

test_empty_expiry_is_denied if {
	denied := deny with input as mock_env(true, "") with time.now_ns as mock_now
	some d in denied
	d.rule == "ttl-missing"
}

test_long_lived_environments_are_not_checked if {
	count(deny) == 0 with input as mock_env(false, null) with time.now_ns as mock_now
	count(deny) == 0 with input as mock_env(false, "2027-12-01T00:00:00Z") with time.now_ns as mock_now
}

test_already_expired_passes if {
	count(deny) == 0 with input as mock_env(true, "2026-11-30T00:00:00Z") with time.now_ns as mock_now
}

# input.now (the state store's clock, in every decision's input) wins over the client's clock:
# a client five years ahead still sees a 24 h TTL as 24 h.
test_the_store_clock_in_input_now_wins_over_a_skewed_client_clock if {
	count(deny) == 0 with input as object.union(mock_env(true, "2026-12-02T00:00:00Z"), {"now": "2026-12-01T00:00:00Z"})
		with time.now_ns as 1953849600000000000
}

test_a_week_is_denied_by_the_store_clock if {
	denied := deny with input as object.union(mock_env(true, "2026-12-08T00:00:00Z"), {"now": "2026-12-01T00:00:00Z"})
		with time.now_ns as 1637000000000000000
	some d in denied
	d.rule == "ttl-too-long"
}
