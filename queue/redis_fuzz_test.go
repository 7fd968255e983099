package queue

import (
	"net/url"
	"strings"
	"testing"

	"github.com/agentq/agentq/redact"
)

// FuzzRedisURL feeds redis.url any string. UniversalOptions must answer
// without panicking, an error must name redis.url, and neither the error
// nor MaskURL may show the URL's password.
func FuzzRedisURL(f *testing.F) {
	for _, s := range []string{
		RedisURLDefault, "rediss://u:s3cretpw@h:6380/2", "redis-sentinel://:s3cretpw@a:1,b:2/1?master=m",
		"redis-socket:///tmp/r.sock?db=3", "redis-socket:///tmp/r.sock?db=x", "redis://h/99999999999999999999",
		"redis://u:s3cretpw@[::1", "redis://u:s3cret%zz@h/", "http://u:s3cretpw@h/", "redis://:@/", "",
		"redis://u:pw@h:6379/0?x=%zz", "redis-sentinel://h:1/0", "redis://h:port/0", "redis://u:s3cretpw@h/-1",
		"redis://s3cretTOKEN@h:6379/0", "redis://h:6379/0?token=s3cretTOKEN", "redis://u:p@ss/w@rd@h:6379/0",
		// go-redis's forms: options, unix, cluster seeds, Sentinel.
		"redis://h:1/0?pool_size=7&dial_timeout=2s", "redis://h:1/0?dial_timeout=zz", "redis://h:1/0?unknown=1",
		"unix://:s3cretpw@/tmp/r.sock?db=1", "unix://", "rediss://h:1/0?skip_verify=true",
		"redis://u:s3cretpw@c1:7000?addr=c2:7001&addr=c3:7002", "redis://c1:7000?addr=nohost",
		"redis://su:s3cretpw@s1:26379/2?master_name=m&addr=s2:26379&password=m4sterpw",
		"redis://s1:1/0?master_name=m&password=m4sterpw&max_retries=x", "redis://s1:1/0?master_name=",
		"redis-sentinel:///0?master=m", "redis://h:1/0/1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		o, err := RedisConfig{URL: raw}.UniversalOptions()
		masked := MaskURL(raw)
		if err != nil && !strings.HasPrefix(err.Error(), "redis.url: ") {
			t.Fatalf("UniversalOptions(%q) = %q, want an error naming redis.url", raw, err)
		}
		if err == nil && (o == nil || len(o.Addrs) == 0) {
			t.Fatalf("UniversalOptions(%q) accepted it with no address: %+v", raw, o)
		}
		u, perr := url.Parse(raw)
		if perr != nil {
			return
		}
		// A password in the query (Sentinel's master password) is masked
		// too, wherever it is long and unique enough to be told apart.
		for k, vs := range u.Query() {
			if !redact.Default().SecretParam(k) {
				continue
			}
			for _, qpw := range vs {
				if len(qpw) < 4 || strings.Count(raw, qpw) > 1 {
					continue
				}
				if strings.Contains(masked, qpw) {
					t.Fatalf("MaskURL(%q) = %q shows the %s parameter", raw, masked, k)
				}
				if err != nil && strings.Contains(err.Error(), qpw) {
					t.Fatalf("UniversalOptions(%q) error %q shows the %s parameter", raw, err, k)
				}
			}
		}
		if u.User == nil {
			return
		}
		pw, ok := u.User.Password()
		user := u.User.Username()
		if !ok {
			// A userinfo with no password is a token, masked whole.
			ok, pw, user = true, user, ""
		}
		// A short password, or one that also stands elsewhere in the URL,
		// cannot be told apart from the rest.
		// A password of asterisks is the mask itself: masked, it reads the same.
		if !ok || len(pw) < 4 || strings.Trim(pw, "*") == "" || strings.Count(raw, pw) > 1 || strings.Contains(u.Host+u.Path+u.RawQuery+user, pw) {
			return
		}
		if strings.Contains(masked, pw) {
			t.Fatalf("MaskURL(%q) = %q shows the password", raw, masked)
		}
		// The messages' own words ("redis.url", the scheme list) do not count.
		if err != nil && strings.Contains(err.Error(), pw) && !strings.Contains("redis.url: "+redisSchemes, pw) {
			t.Fatalf("UniversalOptions(%q) error %q shows the password", raw, err)
		}
	})
}
