package initiator_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/initiator"
	"github.com/gosan/iscsi/initiator/iscsitest"
)

// Callers outside the module branch on Dial's login failures with package
// iscsi's errors, the same values the kernel binding returns.
func TestLoginErrorsExported(t *testing.T) {
	const iqn = "iqn.2026-11.org.gosan.test:errs"
	srv := iscsitest.NewTestServer(t, iscsitest.Config{Targets: []iscsitest.Target{{
		Name: iqn, LUNs: []iscsitest.LUN{{Number: 1, Blocks: 64}},
		CHAP: &iscsitest.CHAPConfig{User: "user-errs", Secret: "right-secret-123"},
	}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, err := initiator.Dial(ctx, srv.Addr(), iqn,
		initiator.WithCHAP(iscsi.CHAP{User: "user-errs", Secret: "wrong-secret-123"}))
	require.Error(t, err)
	assert.True(t, errors.Is(err, iscsi.ErrAuthentication), "%v", err)
	var le *iscsi.LoginError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, uint8(2), le.Class)
	assert.NotContains(t, err.Error(), "wrong-secret-123")

	_, err = initiator.Dial(ctx, srv.Addr(), "iqn.2026-11.org.gosan.test:nosuch")
	assert.True(t, errors.Is(err, iscsi.ErrTargetNotFound), "%v", err)

	_, err = initiator.Dial(ctx, srv.Addr(), iqn, initiator.WithCHAP(iscsi.CHAP{User: "u", Secret: "short"}))
	assert.True(t, errors.Is(err, iscsi.ErrConfig), "%v", err)
}
