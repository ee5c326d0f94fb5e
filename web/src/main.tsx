import { TransportProvider } from "@connectrpc/connect-query";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { transport } from "./api";
import { App } from "./app";
import "./style.css";

const queries = new QueryClient({
  defaultOptions: {
    // The server's answer to a bad request will not change on retry; a dropped connection might.
    queries: { retry: 1, refetchOnWindowFocus: false, staleTime: 5_000 },
  },
});

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <TransportProvider transport={transport}>
      <QueryClientProvider client={queries}>
        <App />
      </QueryClientProvider>
    </TransportProvider>
  </StrictMode>,
);
