# Production runs stable builds only: a release that pins an experimental or a deprecated
# component build is denied. Layer environment-type (production), stages plan and promote.
package stackyard

import rego.v1

deny contains {"msg": msg, "rule": "experimental-component"} if {
	some uid, pin in input.release.lock
	pin.lifecycle == "experimental"
	msg := sprintf(
		"%s pins %s@%s, which is experimental; production takes builds with lifecycle production",
		[uid, pin.component, pin.version],
	)
}

deny contains {"msg": msg, "rule": "deprecated-component"} if {
	some uid, pin in input.release.lock
	deprecated(pin)
	msg := sprintf(
		"%s pins %s@%s, which is deprecated; move to a supported version before production",
		[uid, pin.component, pin.version],
	)
}

deprecated(pin) if pin.deprecated == true

deprecated(pin) if pin.lifecycle == "deprecated"
