package initiator_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/gosan/iscsi/initiator"
)

// Targets behind NAT or a port forward (LIO in a VM, a target in a
// container) advertise their own address in SendTargets, which the client
// may not reach. Try the advertised portals, then fall back to the address
// discovery used.
func ExampleDiscover_behindNAT() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	given := "127.0.0.1:3260" // e.g. forwarded to a guest's 3260
	targets, err := initiator.Discover(ctx, given)
	if err != nil {
		log.Fatal(err)
	}
	for _, tg := range targets {
		var s *initiator.Session
		for _, p := range tg.Portals {
			if s, err = initiator.Dial(ctx, p.String(), tg.TargetName, initiator.WithLoginTimeout(3*time.Second)); err == nil {
				break
			}
			log.Printf("advertised portal %s of %s: %v", p, tg.TargetName, err)
		}
		if s == nil {
			if s, err = initiator.Dial(ctx, given, tg.TargetName); err != nil {
				log.Printf("%s: %v", tg.TargetName, err)
				continue
			}
		}
		fmt.Println(tg.TargetName, "via", s.Portal())
		s.Close()
	}
}
