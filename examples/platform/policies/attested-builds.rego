# Staging and production run only builds whose signed attestation verifies against a
# trusted key. Layer organisation, stages plan and promote; other environment types pass.
package stackyard

import rego.v1

guarded_types := {"staging", "production"}

deny contains {"msg": msg, "rule": "unverified-build"} if {
	input.environment.type in guarded_types
	some uid, build in input.attestations
	not build.verified == true # false, or missing: unverified either way
	msg := sprintf(
		"%s: %s@%s is not attested by a trusted key (%s); %s environments need verified builds",
		[uid, build.component, build.version, reason(build), input.environment.type],
	)
}

reason(build) := build.attestation if {
	is_string(build.attestation)
	build.attestation != ""
} else := "no reason given"
