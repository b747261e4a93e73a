package providers

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// InsufficientCapacityError reports that the cloud ran out of capacity for
// one or more offerings (EC2 InsufficientInstanceCapacity, ECS
// OperationDenied.NoStock). The planner falls back to other offerings at once
// and remembers these as unavailable for a while.
type InsufficientCapacityError struct {
	Offerings []Offering
	Err       error
}

// NewInsufficientCapacityError returns an InsufficientCapacityError naming
// the exhausted offerings.
func NewInsufficientCapacityError(err error, offerings ...Offering) error {
	return &InsufficientCapacityError{Offerings: offerings, Err: err}
}

func (e *InsufficientCapacityError) Error() string {
	names := make([]string, len(e.Offerings))
	for i, o := range e.Offerings {
		names[i] = o.Key()
	}
	msg := "insufficient capacity for offering " + strings.Join(names, ", ")
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *InsufficientCapacityError) Unwrap() error { return e.Err }

// IsInsufficientCapacity reports whether err is or wraps an
// InsufficientCapacityError.
func IsInsufficientCapacity(err error) bool {
	var e *InsufficientCapacityError
	return errors.As(err, &e)
}

// IgnoreInsufficientCapacity returns nil for an InsufficientCapacityError and
// err otherwise.
func IgnoreInsufficientCapacity(err error) error {
	if IsInsufficientCapacity(err) {
		return nil
	}
	return err
}

// ExhaustedOfferings returns the offerings named by an
// InsufficientCapacityError in err's chain, or nil.
func ExhaustedOfferings(err error) []Offering {
	var e *InsufficientCapacityError
	if errors.As(err, &e) {
		return e.Offerings
	}
	return nil
}

// QuotaError reports that an account quota or limit forbids the request
// (EC2 VcpuLimitExceeded/InstanceLimitExceeded, ECS QuotaExceed.*).
type QuotaError struct{ Err error }

// NewQuotaError wraps err as a QuotaError.
func NewQuotaError(err error) error { return &QuotaError{Err: err} }

func (e *QuotaError) Error() string { return "quota exceeded: " + errString(e.Err) }
func (e *QuotaError) Unwrap() error { return e.Err }

// IsQuota reports whether err is or wraps a QuotaError.
func IsQuota(err error) bool {
	var e *QuotaError
	return errors.As(err, &e)
}

// IgnoreQuota returns nil for a QuotaError and err otherwise.
func IgnoreQuota(err error) error {
	if IsQuota(err) {
		return nil
	}
	return err
}

// ThrottledError reports that the cloud API rate-limited the caller even
// after the provider's own backoff. RetryAfter is a hint, zero if unknown.
type ThrottledError struct {
	RetryAfter time.Duration
	Err        error
}

// NewThrottledError wraps err as a ThrottledError.
func NewThrottledError(err error, retryAfter time.Duration) error {
	return &ThrottledError{RetryAfter: retryAfter, Err: err}
}

func (e *ThrottledError) Error() string {
	if e.RetryAfter > 0 {
		return fmt.Sprintf("throttled, retry after %s: %s", e.RetryAfter, errString(e.Err))
	}
	return "throttled: " + errString(e.Err)
}
func (e *ThrottledError) Unwrap() error { return e.Err }

// IsThrottled reports whether err is or wraps a ThrottledError.
func IsThrottled(err error) bool {
	var e *ThrottledError
	return errors.As(err, &e)
}

// IgnoreThrottled returns nil for a ThrottledError and err otherwise.
func IgnoreThrottled(err error) error {
	if IsThrottled(err) {
		return nil
	}
	return err
}

// RetryAfter returns the retry-after hint of a ThrottledError in err's chain.
func RetryAfter(err error) (time.Duration, bool) {
	var e *ThrottledError
	if errors.As(err, &e) {
		return e.RetryAfter, true
	}
	return 0, false
}

// NotFoundError reports that an instance does not exist, is terminated, or is
// not owned by this cluster.
type NotFoundError struct {
	ID  string
	Err error
}

// NewNotFoundError returns a NotFoundError for instance id.
func NewNotFoundError(id string, err error) error { return &NotFoundError{ID: id, Err: err} }

func (e *NotFoundError) Error() string {
	msg := "instance " + e.ID + " not found"
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}
func (e *NotFoundError) Unwrap() error { return e.Err }

// IsNotFound reports whether err is or wraps a NotFoundError.
func IsNotFound(err error) bool {
	var e *NotFoundError
	return errors.As(err, &e)
}

// IgnoreNotFound returns nil for a NotFoundError and err otherwise.
func IgnoreNotFound(err error) error {
	if IsNotFound(err) {
		return nil
	}
	return err
}

// UnavailableError reports that the cloud API is failing (5xx, timeouts)
// after the SDK's retries.
type UnavailableError struct{ Err error }

// NewUnavailableError wraps err as an UnavailableError.
func NewUnavailableError(err error) error { return &UnavailableError{Err: err} }

func (e *UnavailableError) Error() string { return "cloud unavailable: " + errString(e.Err) }
func (e *UnavailableError) Unwrap() error { return e.Err }

// IsUnavailable reports whether err is or wraps an UnavailableError.
func IsUnavailable(err error) bool {
	var e *UnavailableError
	return errors.As(err, &e)
}

// IgnoreUnavailable returns nil for an UnavailableError and err otherwise.
func IgnoreUnavailable(err error) error {
	if IsUnavailable(err) {
		return nil
	}
	return err
}

// AuthError reports that the cloud rejected the provider's credentials (an
// unknown key or a signature that does not match). It is never retried.
type AuthError struct{ Err error }

// NewAuthError wraps err as an AuthError.
func NewAuthError(err error) error { return &AuthError{Err: err} }

func (e *AuthError) Error() string {
	return "cloud rejected credentials: " + errString(e.Err)
}
func (e *AuthError) Unwrap() error { return e.Err }

// IsAuth reports whether err is or wraps an AuthError.
func IsAuth(err error) bool {
	var e *AuthError
	return errors.As(err, &e)
}

// The kinds of typed error ErrorKind names: what metrics and logs label,
// and what the journal records as the "reason" of a refused claim
// (capacity.failed), for tools to match on instead of the text.
const (
	ErrorKindInsufficientCapacity = "insufficient_capacity"
	ErrorKindQuota                = "quota"
	ErrorKindThrottled            = "throttled"
	ErrorKindNotFound             = "not_found"
	ErrorKindUnavailable          = "unavailable"
	ErrorKindAuth                 = "auth"
	ErrorKindOther                = "other"
)

// ErrorKind names the typed error in err's chain, by type, however deeply
// wrapped: one of the ErrorKind constants, or "" for nil.
func ErrorKind(err error) string {
	switch {
	case err == nil:
		return ""
	case IsInsufficientCapacity(err):
		return ErrorKindInsufficientCapacity
	case IsQuota(err):
		return ErrorKindQuota
	case IsThrottled(err):
		return ErrorKindThrottled
	case IsNotFound(err):
		return ErrorKindNotFound
	case IsUnavailable(err):
		return ErrorKindUnavailable
	case IsAuth(err):
		return ErrorKindAuth
	default:
		return ErrorKindOther
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
