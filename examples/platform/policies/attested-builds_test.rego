package stackyard

import rego.v1

mock_attestation(component, version, verified, text) := {
	"component": component,
	"version": version,
	"digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
	"verified": verified,
	"attestation": text,
}

mock_input(env_type, attestations) := {
	"stage": "plan",
	"environment": {"name": env_type, "type": env_type},
	"attestations": attestations,
}

verified_db := mock_attestation("postgres-database", "1.2.0", true, "signature verified by a trusted key")

unsigned_cache := mock_attestation("redis-cache", "1.0.3", false, "no attestation for redis-cache@1.0.3")

test_verified_builds_pass_in_production if {
	count(deny) == 0 with input as mock_input("production", {"checkout.db": verified_db})
}

test_unverified_build_is_denied_in_production if {
	deny == {{
		"msg": "checkout.cache: redis-cache@1.0.3 is not attested by a trusted key (no attestation for redis-cache@1.0.3); production environments need verified builds",
		"rule": "unverified-build",
	}} with input as mock_input("production", {"checkout.db": verified_db, "checkout.cache": unsigned_cache})
}

test_unverified_build_is_denied_in_staging if {
	denied := deny with input as mock_input("staging", {"checkout.cache": unsigned_cache})
	some d in denied
	d.rule == "unverified-build"
	contains(d.msg, "staging environments")
}

test_unverified_build_passes_in_development_and_ephemeral if {
	count(deny) == 0 with input as mock_input("development", {"checkout.cache": unsigned_cache})
	count(deny) == 0 with input as mock_input("ephemeral", {"checkout.cache": unsigned_cache})
}

test_missing_verified_flag_counts_as_unverified if {
	build := object.remove(unsigned_cache, ["verified"])
	count(deny) == 1 with input as mock_input("production", {"checkout.cache": build})
}

test_missing_reason_is_reported if {
	build := mock_attestation("redis-cache", "1.0.3", false, null)
	denied := deny with input as mock_input("production", {"checkout.cache": build})
	some d in denied
	contains(d.msg, "(no reason given)")
}

test_one_deny_per_unverified_build if {
	attestations := {
		"a.cache": unsigned_cache,
		"b.db": mock_attestation("postgres-database", "1.2.0", false, "signature does not verify"),
		"c.db": verified_db,
	}
	count(deny) == 2 with input as mock_input("production", attestations)
}

test_no_attestations_pass if {
	count(deny) == 0 with input as mock_input("production", {})
}
