package volume

// FSGroupChangePolicy says when Publish changes ownership and permissions
// of a volume for PublishOptions.FSGroup, spelled as Kubernetes'
// PodFSGroupChangePolicy.
type FSGroupChangePolicy string

const (
	// FSGroupChangeAlways walks the whole volume on every Publish (the
	// default, as in Kubernetes).
	FSGroupChangeAlways FSGroupChangePolicy = "Always"
	// FSGroupChangeOnRootMismatch walks it only when the volume's root
	// directory does not already have the group, the permissions and the
	// setgid bit the walk would give it.
	FSGroupChangeOnRootMismatch FSGroupChangePolicy = "OnRootMismatch"
)
