// A JSON-RPC client made exactly as InfraKit v0.5's CLI makes its calls
// (pkg/rpc/client/client.go: parseAddress and Call, with gorilla/rpc json2's encoding),
// using only the standard library: our daemons' request checks must let it through.
//
//	goclient ADDRESS METHOD PARAMS_JSON
//
// ADDRESS is a socket path, unix://path, tcp://host:port or a .listen file. Prints the
// result as JSON, or the error on stderr with exit code 1.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/ioutil"
	"math/rand"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
)

func parseAddress(address string) (*url.URL, *http.Client, error) {
	if path.Ext(address) == ".listen" {
		buff, err := ioutil.ReadFile(address)
		if err != nil {
			return nil, nil, err
		}
		address = string(buff)
	}
	u, err := url.Parse(address)
	if err != nil {
		return nil, nil, err
	}
	switch u.Scheme {
	case "", "unix", "file":
		socket := address
		if u.Scheme != "" {
			socket = u.Path
		}
		u.Scheme = "http"
		u.Host = "h"
		u.Path = ""
		return u, &http.Client{Transport: &http.Transport{
			Dial: func(proto, addr string) (net.Conn, error) { return net.Dial("unix", socket) },
		}}, nil
	case "tcp":
		u.Scheme = "http"
		return u, &http.Client{}, nil
	case "http", "https":
		return u, &http.Client{}, nil
	}
	return nil, nil, fmt.Errorf("invalid address %v", address)
}

type clientRequest struct {
	Version string      `json:"jsonrpc"`
	Method  string      `json:"method"`
	Params  interface{} `json:"params"`
	Id      uint64      `json:"id"`
}

type clientResponse struct {
	Version string           `json:"jsonrpc"`
	Result  *json.RawMessage `json:"result"`
	Error   *json.RawMessage `json:"error"`
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: goclient ADDRESS METHOD PARAMS_JSON")
		os.Exit(2)
	}
	u, client, err := parseAddress(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var params interface{}
	if err := json.Unmarshal([]byte(os.Args[3]), &params); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	message, _ := json.Marshal(&clientRequest{Version: "2.0", Method: os.Args[2], Params: params, Id: uint64(rand.Int63())})
	req, err := http.NewRequest(http.MethodPost, u.String(), bytes.NewReader(message))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	var answer clientResponse
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		fmt.Fprintf(os.Stderr, "HTTP %d: %v\n", resp.StatusCode, err)
		os.Exit(1)
	}
	if answer.Error != nil {
		fmt.Fprintln(os.Stderr, string(*answer.Error))
		os.Exit(1)
	}
	fmt.Println(string(*answer.Result))
}
