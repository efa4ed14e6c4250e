package portal_test

import (
	"fmt"

	"github.com/gosan/iscsi/internal/portal"
)

func ExampleParse() {
	a, err := portal.Parse("[2001:db8::5]:3261,2")
	if err != nil {
		panic(err)
	}
	fmt.Println(a.Host, a.Port, a.Tag, a.HasTag)
	fmt.Println(a)
	// Output:
	// 2001:db8::5 3261 2 true
	// [2001:db8::5]:3261
}

func ExampleNormalize() {
	for _, s := range []string{"10.0.0.1", "fe80::1", "host.example:860,1", "10.0.0.1:0"} {
		n, err := portal.Normalize(s)
		fmt.Println(n, err)
	}
	// Output:
	// 10.0.0.1:3260 <nil>
	// [fe80::1]:3260 <nil>
	// host.example:860 <nil>
	//  portal "10.0.0.1:0": bad port (want 1..65535)
}
