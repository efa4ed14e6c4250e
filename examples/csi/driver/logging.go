package driver

import (
	"context"
	"log/slog"
)

type volumeIDKey struct{}

// withVolumeID returns ctx carrying the volume id of the call, which
// ContextHandler adds to every record logged with that context (the mount
// layer's lines included).
func withVolumeID(ctx context.Context, volumeID string) context.Context {
	return context.WithValue(ctx, volumeIDKey{}, volumeID)
}

// ContextHandler wraps h so that records logged with a call's context
// carry its volume id ("volumeID"), also from code (package
// blockdev/volume) that does not know it.
func ContextHandler(h slog.Handler) slog.Handler { return ctxHandler{h} }

type ctxHandler struct{ slog.Handler }

func (h ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	if id, ok := ctx.Value(volumeIDKey{}).(string); ok && id != "" {
		has := false
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "volumeID" {
				has = true
				return false
			}
			return true
		})
		if !has {
			r.AddAttrs(slog.String("volumeID", id))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h ctxHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return ctxHandler{h.Handler.WithAttrs(as)}
}

func (h ctxHandler) WithGroup(name string) slog.Handler { return ctxHandler{h.Handler.WithGroup(name)} }
