package bmcfake_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy/internal/bmcfake"
)

// TestStrict checks that the fake refuses what bmcd refuses, with bmcd's
// status and body, so a client that passes against it is not relying on
// leniency.
func TestStrict(t *testing.T) {
	f := bmcfake.New(bmcfake.Options{User: "root", Password: "pw"})
	defer f.Close()
	client := trusting(t, f)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("root:pw"))
	cases := []struct {
		name, method, path, auth, body string
		status                         int
		want                           string
	}{
		{"no auth", "GET", "/api/bmc?opt=get&type=power", "", "", 401, "no authorization header provided"},
		{"unknown token", "GET", "/api/bmc?opt=get&type=power", "Bearer nope", "", 401, "token nope is not registered"},
		{"wrong basic", "GET", "/api/bmc?opt=get&type=power", "Basic " + base64.StdEncoding.EncodeToString([]byte("root:x")), "", 401, "credentials incorrect"},
		{"slot 5 as node=4", "GET", "/api/bmc?opt=set&type=reset&node=4", basic, "", 400, `{"response":[{"result":"Parameter ` + "`node`" + ` is out of range 0..3 of node IDs"}]}`},
		{"node not a number", "GET", "/api/bmc?opt=get&type=uart&node=x", basic, "", 400, "is not a number"},
		{"bad power value", "GET", "/api/bmc?opt=set&type=power&node1=2", basic, "", 400, "Invalid value `2` for parameter `node1`"},
		{"no opt", "GET", "/api/bmc?type=power", basic, "", 400, "Missing `opt` parameter"},
		{"power status", "GET", "/api/bmc?opt=get&type=power", basic, "", 200, `{"response":[{"result":[{"node1":"0","node2":"0","node3":"0","node4":"0"}]}]}`},
		{"flash without length", "GET", "/api/bmc?opt=set&type=flash&node=0&file=a.img", basic, "", 411, "Invalid `length` query parameter"},
		{"login wrong", "POST", "/api/bmc/authenticate", "", `{"username":"root","password":"x"}`, 403, "credentials incorrect"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, "https://"+f.Address()+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
				t.Errorf("%d %s, want %d containing %s", resp.StatusCode, body, tc.status, tc.want)
			}
		})
	}
}

func TestBanAfterFailures(t *testing.T) {
	f := bmcfake.New(bmcfake.Options{User: "root", Password: "pw", MaxAttempts: 2})
	defer f.Close()
	client := trusting(t, f)
	login := func(pw string) (int, string) {
		resp, err := client.Post("https://"+f.Address()+"/api/bmc/authenticate", "application/json", strings.NewReader(`{"username":"root","password":"`+pw+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	login("a")
	login("b")
	if st, body := login("pw"); st != 403 || !strings.Contains(body, "Exceeded allowed authentication attempts") {
		t.Errorf("after 2 failures the right password got %d %s, want a ban", st, body)
	}
}

func trusting(t *testing.T, f *bmcfake.BMC) *http.Client {
	t.Helper()
	conn, err := tls.Dial("tcp", f.Address(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(conn.ConnectionState().PeerCertificates[0])
	conn.Close()
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}
