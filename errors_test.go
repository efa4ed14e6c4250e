package iscsi

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLoginErrorStatuses(t *testing.T) {
	for status, want := range map[uint16]error{
		0x0201: ErrAuthentication, 0x0202: ErrAuthorization, 0x0203: ErrTargetNotFound,
		0x0301: ErrServiceUnavailable, 0x0302: ErrOutOfResources, 0x02ff: ErrInitiatorError, 0x03ff: ErrTargetError,
	} {
		e := &LoginError{Class: uint8(status >> 8), Detail: uint8(status), Stage: StageSecurity}
		assert.True(t, errors.Is(e, want), "%#04x: %v", status, e)
		assert.Equal(t, status, e.Status())
		assert.Equal(t, status>>8 == 3, e.Retryable(), "%#04x", status)
		assert.Equal(t, e.Retryable(), e.Temporary())
	}
	e := &LoginError{Class: 2, Detail: 1, Stage: StageOperational}
	assert.Equal(t, "authentication failure (status 0x0201, operational stage)", e.Error())
	assert.False(t, errors.Is(e, ErrAuthorization))
	unknown := &LoginError{Class: 9, Detail: 1}
	assert.Equal(t, "unknown login status (status 0x0901, security stage)", unknown.Error())
	assert.Nil(t, unknown.Unwrap())
}

func TestRedirectError(t *testing.T) {
	e := &RedirectError{Address: "fe80::1", Port: 3261, Permanent: true, Detail: 2}
	assert.Equal(t, "[fe80::1]:3261", e.Portal())
	assert.Equal(t, "target moved permanently to [fe80::1]:3261 (status 0x0102)", e.Error())
}
