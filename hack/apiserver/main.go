// Command flowrun-apiserver is a stand-alone Kubernetes API server for tests: the
// upstream k8s.io/apiextensions-apiserver (CRDs and custom resources on etcd: structural
// schemas, CEL validation, defaulting, pruning, status subresource, server-side apply,
// watch, finalizers) made usable without a kube-apiserver next to it.
//
// Upstream's own main expects to run behind a kube-apiserver: it delegates authn/authz
// to it, reads Services through it, and leaves discovery to kube-aggregator. Alone it
// never becomes ready and kubectl cannot discover anything. This main reuses the
// upstream packages unchanged and only wires them differently:
//
//   - delegated authentication/authorization kubeconfigs are optional: clients
//     authenticate with certificates signed by --client-ca-file, and only the
//     system:masters group is authorized (the delegating authorizer always allows it);
//   - without --kubeconfig (no core API to talk to) there are no core informers,
//     admission plugins or API priority-and-fairness, all of which need one;
//   - discovery is on: /apis lists the CRD groups (kept in sync by a CRD informer),
//     and /api, /api/v1 describe an empty core group so clients' discovery succeeds;
//   - OpenAPI v2 and v3 are both served (kubectl explain, client-side validation).
//
// hack/cluster.sh runs it; hack/apiserver/build.sh builds it from Debian's packaged
// Kubernetes sources.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"sync"

	"github.com/spf13/cobra"
	noopoteltrace "go.opentelemetry.io/otel/trace/noop"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apiserver"
	"k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	generatedopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeversion "k8s.io/apimachinery/pkg/version"
	"k8s.io/apiserver/pkg/endpoints/discovery"
	discoveryendpoint "k8s.io/apiserver/pkg/endpoints/discovery/aggregated"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/util/openapi"
	"k8s.io/apiserver/pkg/util/proxy"
	"k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/client-go/kubernetes/scheme"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/version"
	netutils "k8s.io/utils/net"
)

func main() {
	ctx := genericapiserver.SetupSignalContext()
	os.Exit(cli.Run(newCommand(ctx)))
}

func newCommand(ctx context.Context) *cobra.Command {
	o := options.NewCustomResourceDefinitionsServerOptions(os.Stdout, os.Stderr)
	// There is no kube-apiserver to delegate to: client certificates only, and no
	// lookup of the kube-system/extension-apiserver-authentication ConfigMap.
	o.RecommendedOptions.Authentication.RemoteKubeConfigFileOptional = true
	o.RecommendedOptions.Authentication.SkipInClusterLookup = true
	o.RecommendedOptions.Authorization.RemoteKubeConfigFileOptional = true

	var showVersion bool
	cmd := &cobra.Command{
		Use:          "flowrun-apiserver",
		Short:        "Stand-alone CustomResourceDefinition API server for tests",
		SilenceUsage: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return o.ServerRunOptions.ComponentGlobalsRegistry.Set()
		},
		RunE: func(c *cobra.Command, _ []string) error {
			if showVersion {
				// Deliberately not "Kubernetes vX": hack/cluster.sh tells this binary
				// apart from a real kube-apiserver by this line.
				fmt.Printf("flowrun-apiserver %s (k8s.io/apiextensions-apiserver)\n", version.Get().GitVersion)
				return nil
			}
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return run(c.Context(), o)
		},
	}
	cmd.SetContext(ctx)
	o.AddFlags(cmd.Flags())
	cmd.Flags().BoolVar(&showVersion, "version", false, "Print the version and exit.")
	return cmd
}

func run(ctx context.Context, o *options.CustomResourceDefinitionsServerOptions) error {
	// A core kubeconfig (--kubeconfig) means a real cluster is beside us: keep upstream's
	// behaviour. Without one, drop everything that needs core informers or clients.
	standalone := o.RecommendedOptions.CoreAPI.CoreAPIKubeconfigPath == ""
	if standalone {
		o.RecommendedOptions.CoreAPI = nil
		o.RecommendedOptions.Admission = nil
		o.RecommendedOptions.Features.EnablePriorityAndFairness = false
	}

	config, err := newConfig(o, standalone)
	if err != nil {
		return err
	}
	completed := config.Complete()
	// Complete() switches discovery off because kube-aggregator serves /apis in a real
	// cluster; here nobody else would, so switch it back on before New() installs it.
	completed.GenericConfig.EnableDiscovery = true
	server, err := completed.New(genericapiserver.NewEmptyDelegate())
	if err != nil {
		return err
	}
	generic := server.GenericAPIServer

	crds := server.Informers.Apiextensions().V1().CustomResourceDefinitions().Informer()
	if err := syncGroupList(crds, generic.DiscoveryGroupManager); err != nil {
		return err
	}
	serveEmptyCoreGroup(generic)

	return generic.PrepareRun().RunWithContext(ctx)
}

// newConfig follows upstream options.Config(), which we cannot call as is: it reads
// Services through core informers that a stand-alone server does not have. It also
// configures OpenAPI v2 next to v3; upstream leaves v2 to kube-apiserver.
func newConfig(o *options.CustomResourceDefinitionsServerOptions, standalone bool) (*apiserver.Config, error) {
	ro := o.RecommendedOptions
	if err := ro.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost", nil, []net.IP{netutils.ParseIPSloppy("127.0.0.1")}); err != nil {
		return nil, fmt.Errorf("error creating self-signed certificates: %w", err)
	}

	cfg := genericapiserver.NewRecommendedConfig(apiserver.Codecs)
	// Set before ApplyTo so that authentication adds its security definitions to it.
	namer := openapinamer.NewDefinitionNamer(apiserver.Scheme, scheme.Scheme)
	defs := openapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(generatedopenapi.GetOpenAPIDefinitions)
	cfg.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(defs, namer)
	cfg.OpenAPIConfig.Info.Title = "flowrun-apiserver"
	cfg.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(defs, namer)
	cfg.OpenAPIV3Config.Info.Title = "flowrun-apiserver"

	if err := o.ServerRunOptions.ApplyTo(&cfg.Config); err != nil {
		return nil, err
	}
	if err := ro.ApplyTo(cfg); err != nil {
		return nil, err
	}
	if err := o.APIEnablement.ApplyTo(&cfg.Config, apiserver.DefaultAPIResourceConfigSource(), apiserver.Scheme); err != nil {
		return nil, err
	}

	// Conversion webhooks given by Service reference need the Services API; webhooks
	// given by URL work either way.
	var services webhook.ServiceResolver = noServices{}
	if !standalone {
		services = serviceResolver{cfg.SharedInformerFactory.Core().V1().Services().Lister()}
	}
	return &apiserver.Config{
		GenericConfig: cfg,
		ExtraConfig: apiserver.ExtraConfig{
			CRDRESTOptionsGetter: options.NewCRDRESTOptionsGetter(*ro.Etcd, cfg.ResourceTransformers, cfg.StorageObjectCountTracker),
			ServiceResolver:      services,
			AuthResolverWrapper:  webhook.NewDefaultAuthenticationInfoResolverWrapper(nil, nil, cfg.LoopbackClientConfig, noopoteltrace.NewTracerProvider()),
		},
	}, nil
}

// syncGroupList keeps the legacy (unaggregated) /apis group list in step with the
// established CRDs. The per-group and per-version documents (/apis/G, /apis/G/V) and
// aggregated discovery are already maintained by upstream's discovery controller; only
// this top-level list is normally kube-aggregator's job. Clients that use legacy
// discovery (kube-rs Discovery, older kubectl) start from it.
func syncGroupList(crds cache.SharedIndexInformer, groups discovery.GroupManager) error {
	var mu sync.Mutex
	ours := map[string]bool{} // groups we added, so built-in groups are never removed
	resync := func() {
		mu.Lock()
		defer mu.Unlock()
		want := map[string][]metav1.GroupVersionForDiscovery{}
		for _, obj := range crds.GetStore().List() {
			crd, ok := obj.(*apiextensionsv1.CustomResourceDefinition)
			// Same rule as upstream's discovery controller: established and served.
			if !ok || !apihelpers.IsCRDConditionTrue(crd, apiextensionsv1.Established) {
				continue
			}
			for _, v := range crd.Spec.Versions {
				gv := metav1.GroupVersionForDiscovery{GroupVersion: crd.Spec.Group + "/" + v.Name, Version: v.Name}
				if v.Served && !containsVersion(want[crd.Spec.Group], gv) {
					want[crd.Spec.Group] = append(want[crd.Spec.Group], gv)
				}
			}
		}
		for g := range ours {
			if _, ok := want[g]; !ok {
				groups.RemoveGroup(g)
				delete(ours, g)
			}
		}
		for g, versions := range want {
			// The preferred version comes first: GA over beta over alpha, then newest.
			sort.Slice(versions, func(i, j int) bool {
				return kubeversion.CompareKubeAwareVersionStrings(versions[i].Version, versions[j].Version) > 0
			})
			groups.AddGroup(metav1.APIGroup{Name: g, Versions: versions, PreferredVersion: versions[0]})
			ours[g] = true
		}
	}
	_, err := crds.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { resync() },
		UpdateFunc: func(any, any) { resync() },
		DeleteFunc: func(any) { resync() },
	})
	return err
}

func containsVersion(list []metav1.GroupVersionForDiscovery, gv metav1.GroupVersionForDiscovery) bool {
	for _, x := range list {
		if x == gv {
			return true
		}
	}
	return false
}

// serveEmptyCoreGroup answers core-group discovery: version v1 exists and has no
// resources, both in the legacy form (/api, /api/v1) and, on request, in the aggregated
// form (the same upstream handler kube-apiserver wraps around /api). Without it /api is
// a 404: kube-rs Discovery fails on it, and aggregated discovery needs the v2 document.
func serveEmptyCoreGroup(s *genericapiserver.GenericAPIServer) {
	s.AggregatedLegacyDiscoveryGroupManager.AddGroupVersion("", apidiscoveryv2.APIVersionDiscovery{
		Version:   "v1",
		Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent,
	})
	legacy := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, &metav1.APIVersions{
			TypeMeta: metav1.TypeMeta{Kind: "APIVersions"},
			Versions: []string{"v1"},
			ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{
				{ClientCIDR: "0.0.0.0/0", ServerAddress: r.Host},
			},
		})
	})
	api := discoveryendpoint.WrapAggregatedDiscoveryToHandler(legacy, s.AggregatedLegacyDiscoveryGroupManager, s.AggregatedLegacyDiscoveryGroupManager)
	s.Handler.NonGoRestfulMux.Handle("/api", api)
	s.Handler.NonGoRestfulMux.Handle("/api/", api)
	s.Handler.NonGoRestfulMux.HandleFunc("/api/v1", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, &metav1.APIResourceList{
			TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
			GroupVersion: "v1",
			APIResources: []metav1.APIResource{}, // [] rather than null: strict clients require the field
		})
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

type noServices struct{}

func (noServices) ResolveEndpoint(namespace, name string, _ int32) (*url.URL, error) {
	return nil, fmt.Errorf("cannot resolve service %s/%s: this API server has no core API (give webhooks a URL)", namespace, name)
}

type serviceResolver struct{ services corelisters.ServiceLister }

func (r serviceResolver) ResolveEndpoint(namespace, name string, port int32) (*url.URL, error) {
	return proxy.ResolveCluster(r.services, namespace, name, port)
}
