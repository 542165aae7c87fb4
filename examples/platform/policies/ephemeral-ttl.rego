# Ephemeral environments must expire, and within 72 hours: creating or extending one past
# that is denied. Layer organisation, stage environment (env create and env extend).
package stackyard

import rego.v1

hour_ns := (60 * 60) * 1000000000

max_ttl_hours := 72

deny contains {"msg": msg, "rule": "ttl-missing"} if {
	input.environment.ephemeral == true
	not has_expiry
	msg := sprintf(
		"ephemeral environment %s has no expiry; give it a TTL of at most %d h (--ttl)",
		[input.environment.name, max_ttl_hours],
	)
}

deny contains {"msg": msg, "rule": "ttl-too-long"} if {
	input.environment.ephemeral == true
	has_expiry
	left_ns := time.parse_rfc3339_ns(input.environment.expires_at) - now_ns
	left_ns > max_ttl_hours * hour_ns
	msg := sprintf(
		"ephemeral environment %s would expire in %d h (at %s), more than the %d h allowed",
		[input.environment.name, ceil(left_ns / hour_ns), input.environment.expires_at, max_ttl_hours],
	)
}

# The state store's clock (input.now) when the input has it, as every decision's does.
now_ns := time.parse_rfc3339_ns(input.now) if {
	is_string(input.now)
} else := time.now_ns()

has_expiry if {
	is_string(input.environment.expires_at)
	input.environment.expires_at != ""
}
