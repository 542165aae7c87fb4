package stackyard

import rego.v1

mock_pin(component, version, lifecycle, is_deprecated) := {
	"component": component,
	"version": version,
	"digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
	"lifecycle": lifecycle,
	"deprecated": is_deprecated,
	"owner": "team-platform",
}

mock_release(lock) := {
	"stage": "promote",
	"environment": {"name": "production", "type": "production"},
	"release": {"id": "r-1", "from": "staging", "lock": lock},
}

test_stable_builds_pass if {
	lock := {
		"checkout.db": mock_pin("postgres-database", "1.2.0", "production", false),
		"checkout.cache": mock_pin("redis-cache", "1.0.3", "production", false),
	}
	count(deny) == 0 with input as mock_release(lock)
}

test_experimental_build_is_denied if {
	lock := {
		"checkout.db": mock_pin("postgres-database", "0.1.0", "experimental", false),
		"checkout.cache": mock_pin("redis-cache", "1.0.3", "production", false),
	}
	deny == {{
		"msg": "checkout.db pins postgres-database@0.1.0, which is experimental; production takes builds with lifecycle production",
		"rule": "experimental-component",
	}} with input as mock_release(lock)
}

test_deprecated_build_is_denied if {
	lock := {"checkout.cache": mock_pin("redis-cache", "1.0.0", "production", true)}
	denied := deny with input as mock_release(lock)
	count(denied) == 1
	some d in denied
	d.rule == "deprecated-component"
	contains(d.msg, "checkout.cache pins redis-cache@1.0.0")
}

test_deprecated_lifecycle_is_denied if {
	lock := {"checkout.cache": mock_pin("redis-cache", "0.9.0", "deprecated", false)}
	denied := deny with input as mock_release(lock)
	{d.rule | some d in denied} == {"deprecated-component"}
}

test_every_bad_pin_is_named if {
	lock := {
		"a.db": mock_pin("postgres-database", "0.1.0", "experimental", false),
		"b.db": mock_pin("postgres-database", "0.2.0", "experimental", true),
		"c.cache": mock_pin("redis-cache", "1.0.0", "production", true),
		"d.vol": mock_pin("local-volume", "1.0.0", "production", false),
	}
	denied := deny with input as mock_release(lock)
	count(denied) == 4
	{d.rule | some d in denied} == {"experimental-component", "deprecated-component"}
}

test_empty_lock_passes if {
	count(deny) == 0 with input as mock_release({})
}

test_no_release_passes if {
	count(deny) == 0 with input as {"stage": "plan", "environment": {"type": "production"}, "release": null}
}
