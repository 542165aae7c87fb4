# Every environment has an owning team (who pays for it, who is paged, who may destroy it).
# Creating or extending one without an owner is denied. Layer organisation, stage environment.
package stackyard

import rego.v1

deny contains {"msg": msg, "rule": "owner-required"} if {
	not has_owner
	msg := sprintf(
		"environment %s has no owner; give it an owning team (--owner TEAM, or spec.owner in its Environment document)",
		[object.get(input, ["environment", "name"], "(unnamed)")],
	)
}

has_owner if {
	is_string(input.environment.owner)
	trim_space(input.environment.owner) != ""
}
